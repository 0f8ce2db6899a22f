import { layer } from "@effect/vitest"
import { Api } from "@sam/bus"
import { Gateway } from "@sam/gateway"
import { Effect } from "effect"
import { expect } from "vitest"
import { isOpen, type RawClient, rawClient } from "../integration/gateway/FeedTestKit.js"
import { waitUntil } from "../src/Env.js"
import { GatewayEnv, GatewayUrl, http, makeUser } from "../src/index.js"
import { closeCodeIn, frameHeader, makePasswordUser, rawWebSocket } from "./SecurityKit.js"

const open = (url: string, token: string) =>
  Effect.gen(function* () {
    const client = yield* rawClient(url, token)
    if (!isOpen(client)) throw new Error(`the feed refused the connection: ${client.refused}`)
    yield* waitUntil(
      "hello",
      Effect.sync(() => client.of("hello")[0])
    )
    return client
  })

/** Wait for the client's close; how long after `since` it came. */
const closedWithin = (client: RawClient, since: number) =>
  Effect.promise(() => client.closed).pipe(Effect.map((closed) => ({ ...closed, ms: Date.now() - since })))

const loginAt = (login: string, password: string, url?: string) =>
  url === undefined
    ? http("POST", "/api/v1/auth/login", { body: { login, password } })
    : http("POST", "/api/v1/auth/login", { body: { login, password } }).pipe(Effect.provideService(GatewayUrl, url))

/** A gateway of the test's own, so its sign-in throttle starts empty. */
const ownGateway = Gateway.start({ host: "127.0.0.1", port: 0 }).pipe(Effect.map((g) => g.url))

layer(GatewayEnv, { excludeTestServices: true, timeout: 120_000 })("security: gateway limits", (it) => {
  it.effect("a feed message announced over 64 KiB is refused (1009) from its header, before it is read", () =>
    Effect.gen(function* () {
      const url = yield* GatewayUrl
      const alice = yield* makeUser("Alice")
      const ws = yield* Effect.promise(() => rawWebSocket(url, alice.token))
      // 90 MiB announced, 64 KiB sent: a server that buffers the message first waits for the rest.
      ws.socket.write(Buffer.concat([frameHeader(90 * 1024 * 1024), Buffer.alloc(65_536)]))
      const code = yield* waitUntil(
        "the server's close frame",
        Effect.sync(() => closeCodeIn(ws.received())),
        { timeout: "5 seconds" }
      )
      expect(code).toBe(Api.FeedClose.messageTooBig)
      ws.socket.destroy()
    })
  )

  it.effect("a user gets at most 32 feed connections; the next is closed with 4009, other users are not affected", () =>
    Effect.gen(function* () {
      const url = yield* GatewayUrl
      const alice = yield* makeUser("Alice")
      const bob = yield* makeUser("Bob")
      const clients = yield* Effect.forEach(Array.from({ length: 32 }), () => open(url, alice.token), {
        concurrency: 8
      })
      const extra = yield* rawClient(url, alice.token)
      if (!isOpen(extra)) throw new Error("upgrade refused")
      const closed = yield* Effect.promise(() => extra.closed)
      expect(closed.code).toBe(Api.FeedClose.tooManyConnections)
      expect(closed.reason).toContain("at most 32")
      expect(extra.of("hello")).toEqual([])

      const other = yield* open(url, bob.token)
      other.socket.close()
      // Closing one of Alice's connections makes room for another.
      clients[0]?.socket.close()
      const again = yield* waitUntil(
        "a connection once one was closed",
        Effect.gen(function* () {
          const client = yield* rawClient(url, alice.token)
          if (!isOpen(client)) return undefined
          const result = yield* Effect.promise(() =>
            Promise.race([
              client.closed.then(() => undefined),
              new Promise<RawClient>((resolve) => {
                const check = setInterval(() => {
                  if (client.of("hello").length > 0) {
                    clearInterval(check)
                    resolve(client)
                  }
                }, 20)
              })
            ])
          )
          return result
        })
      )
      expect(again.of("hello")).toHaveLength(1)
      for (const client of [...clients, again]) client.socket.close()
    })
  )

  it.scoped(
    "wrong passwords are throttled per login (429 with Retry-After, growing), even the right one meanwhile",
    () =>
      Effect.gen(function* () {
        const url = yield* ownGateway
        const login = (name: string, password: string) => loginAt(name, password, url)
        yield* makePasswordUser("carol", "carol-right-password")
        // 200 wrong guesses as fast as the client can send them, 10 at a time.
        const started = Date.now()
        const answers = yield* Effect.forEach(Array.from({ length: 200 }), () => login("carol", "wrong"), {
          concurrency: 10
        })
        const elapsed = Date.now() - started
        const checked = answers.filter((a) => a.status === 401).length
        const limited = answers.filter((a) => a.status === 429)
        console.log(`200 wrong passwords in ${elapsed} ms: ${checked} checked (401), ${limited.length} refused (429)`)
        // Five free attempts, then one more each time a lock (1 s, 2 s, 4 s…) ran out while the guesses went on:
        // on a loaded machine the 200 take longer than the first lock.
        const allowed = 5 + Math.ceil(Math.log2(2 + elapsed / 1000))
        expect(checked).toBeLessThanOrEqual(allowed)
        expect(limited.length).toBeGreaterThanOrEqual(200 - allowed)
        expect(limited[0]?.body.code).toBe("rate_limited")
        expect(Number(limited[0]?.headers.get("retry-after"))).toBeGreaterThanOrEqual(1)

        // Once the lock has passed, one more wrong guess is checked and locks the login for longer than the
        // first lock (1 s): the right password is refused too while it lasts, the lock says nothing about it.
        // (Asked right after this guess, not after the burst: the burst's last lock may run out while its
        // slowest checked guesses are still being hashed.)
        yield* waitUntil(
          "the lock to pass",
          login("carol", "wrong").pipe(Effect.map((r) => (r.status === 401 ? r : undefined))),
          { timeout: "20 seconds", every: "200 millis" }
        )
        const next = yield* login("carol", "carol-right-password")
        expect(next.status).toBe(429)
        expect(next.body.code).toBe("rate_limited")
        expect(Number(next.headers.get("retry-after"))).toBeGreaterThanOrEqual(2)
        // After it, the right password signs in, and the login starts over.
        const signedIn = yield* waitUntil(
          "the right password to be accepted",
          login("carol", "carol-right-password").pipe(Effect.map((r) => (r.status === 200 ? r : undefined))),
          { timeout: "40 seconds", every: "200 millis" }
        )
        expect(signedIn.body.userId).toBeDefined()
        expect((yield* login("carol", "wrong")).status).toBe(401)
      })
  )

  it.scoped("guessing across many logins from one address is throttled too", () =>
    Effect.gen(function* () {
      const url = yield* ownGateway
      const answers = yield* Effect.forEach(
        Array.from({ length: 30 }, (_, i) => `nobody-${i}`),
        (name) => loginAt(name, "guess", url)
      )
      const statuses = answers.map((a) => a.status)
      expect(statuses.slice(0, 20).every((s) => s === 401)).toBe(true)
      expect(statuses.slice(21).every((s) => s === 429)).toBe(true)
    })
  )

  it.scoped("revoking a token closes its feed connections (4001) within 2 s, on every gateway", () =>
    Effect.gen(function* () {
      const url = yield* GatewayUrl
      const other = (yield* Gateway.start({ host: "127.0.0.1", port: 0 })).url
      const alice = yield* makeUser("Alice")
      const made = yield* http("POST", "/api/v1/tokens", { token: alice.token, body: { name: "laptop" } })
      const laptop = made.body.token as string
      const here = yield* open(url, laptop)
      const there = yield* open(other, laptop)
      const unrelated = yield* open(url, alice.token)

      const revoked = yield* http("DELETE", `/api/v1/tokens/${made.body.id}`, { token: alice.token })
      expect(revoked.status).toBe(200)
      // from the answer: the request's own time on a loaded machine is not the feed's
      const revokedAt = Date.now()
      const [a, b] = yield* Effect.all([closedWithin(here, revokedAt), closedWithin(there, revokedAt)], {
        concurrency: 2
      })
      console.log(`token revoked: feed closed after ${a.ms} ms on this gateway, ${b.ms} ms on the other`)
      expect(a.code).toBe(Api.FeedClose.unauthenticated)
      expect(b.code).toBe(Api.FeedClose.unauthenticated)
      expect(a.ms).toBeLessThan(2_000)
      expect(b.ms).toBeLessThan(2_000)
      // Alice's other token keeps its connection.
      unrelated.send({ type: "ping" })
      yield* waitUntil(
        "pong on the unrelated connection",
        Effect.sync(() => unrelated.of("pong")[0])
      )
      unrelated.socket.close()
    })
  )

  it.effect("signing out closes the feed connections of that sign-in within 2 s", () =>
    Effect.gen(function* () {
      const url = yield* GatewayUrl
      yield* makePasswordUser("dave", "dave-password-1")
      const signedIn = yield* loginAt("dave", "dave-password-1")
      expect(signedIn.status).toBe(200)
      const session = signedIn.body.sessionToken as string
      const feed = yield* open(url, session)
      const out = yield* http("POST", "/api/v1/auth/logout", { token: session })
      expect(out.status).toBe(200)
      const at = Date.now()
      const closed = yield* closedWithin(feed, at)
      console.log(`signed out: feed closed after ${closed.ms} ms`)
      expect(closed.code).toBe(Api.FeedClose.unauthenticated)
      expect(closed.ms).toBeLessThan(2_000)
    })
  )
})
