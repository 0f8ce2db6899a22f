import * as Net from "node:net"
import { layer } from "@effect/vitest"
import { Gateway } from "@sam/gateway"
import { Effect, Exit, Option, Scope } from "effect"
import { expect } from "vitest"
import { rawWebSocket } from "../../security/SecurityKit.js"
import { waitUntil } from "../../src/Env.js"
import { GatewayEnv, GatewayUrl, makeUser } from "../../src/index.js"

/** A TCP connection to `url` that has written `bytes`; `closed()` once the server has let it go. */
const connection = (url: string, bytes: string) =>
  new Promise<{ readonly closed: () => boolean }>((resolve, reject) => {
    const { hostname, port } = new URL(url)
    const socket = Net.connect(Number(port), hostname)
    let closed = false
    socket.on("close", () => {
      closed = true
    })
    socket.on("error", () => {})
    socket.resume()
    socket.once("connect", () => {
      socket.write(bytes)
      resolve({ closed: () => closed })
    })
    socket.once("error", reject)
  })

/**
 * A gateway of its own with one client that holds a connection open as `hold` makes it; the gateway's
 * scope closes, and must be closed within a few seconds with that connection let go (the web test stack
 * waited on such a connection until its 45 s limit).
 */
const stopsWithin = <E, R>(hold: (url: string) => Effect.Effect<{ readonly closed: () => boolean }, E, R>) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const { url } = yield* Gateway.start({ host: "127.0.0.1", port: 0 }).pipe(Scope.extend(scope))
    const client = yield* hold(url)
    yield* Effect.sleep("200 millis")
    const started = Date.now()
    const closed = yield* Scope.close(scope, Exit.void).pipe(Effect.timeout("15 seconds"), Effect.option)
    const ms = Date.now() - started
    console.log(`gateway stopped after ${ms} ms`)
    expect(Option.isSome(closed)).toBe(true)
    expect(ms).toBeLessThan(5_000)
    // the server has let it go: the client sees its end soon after (on a loaded machine, not within a fixed wait)
    yield* waitUntil(
      "the client's connection closed",
      Effect.sync(() => (client.closed() ? true : undefined)),
      { timeout: "5 seconds" }
    )
  })

const hostOf = (url: string) => new URL(url).host

type Feed = Awaited<ReturnType<typeof rawWebSocket>>

/** A feed upgrade request of `token`'s user, with `headers` instead of a valid handshake's key and version. */
const feedUpgrade = (url: string, token: string, headers: ReadonlyArray<string>) =>
  [
    "GET /api/v1/feed HTTP/1.1",
    `Host: ${hostOf(url)}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Authorization: Bearer ${token}`,
    ...headers,
    "",
    ""
  ].join("\r\n")
const VALID_HANDSHAKE = ["Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]

/** Send `bytes` on a connection of its own and read until the server closes it; what it answered. */
const answer = (url: string, bytes: string) =>
  new Promise<string>((resolve, reject) => {
    const { hostname, port } = new URL(url)
    const socket = Net.connect(Number(port), hostname, () => socket.write(bytes))
    let text = ""
    socket.on("data", (chunk) => {
      text += chunk.toString()
    })
    socket.on("close", () => resolve(text))
    socket.on("error", reject)
  })

/**
 * Connections that each send a feed upgrade and leave before it is answered, while the gateway checks their
 * credential: `end` sends a FIN, `reset` a TCP reset. Resolves once the server has seen all of them go.
 */
const leaveDuringHandshake = (
  url: string,
  token: string,
  count: number,
  how: "end" | "reset",
  request = feedUpgrade(url, token, VALID_HANDSHAKE)
) =>
  Promise.all(
    Array.from(
      { length: count },
      (_, i) =>
        new Promise<void>((resolve) => {
          const { hostname, port } = new URL(url)
          const socket = Net.connect(Number(port), hostname, () => {
            socket.write(request)
            // some at once, some a moment later: before, during and after the credential's check
            setTimeout(() => (how === "end" ? socket.end() : socket.resetAndDestroy()), i % 4)
          })
          socket.on("error", () => {})
          // read to the end: a socket that sent its FIN is over once it has read the server's
          socket.resume()
          socket.on("close", () => resolve())
        })
    )
  )

layer(GatewayEnv, { excludeTestServices: true, timeout: 120_000 })("gateway: shutdown", (it) => {
  it.effect("stops within seconds while a client has sent half a request", () =>
    stopsWithin((url) => Effect.promise(() => connection(url, `GET /api/v1/me HTTP/1.1\r\nHost: ${hostOf(url)}\r\n`)))
  )

  it.effect("stops within seconds while a client keeps an idle keep-alive connection", () =>
    stopsWithin((url) =>
      Effect.promise(() =>
        connection(url, `GET /api/v1/me HTTP/1.1\r\nHost: ${hostOf(url)}\r\nConnection: keep-alive\r\n\r\n`)
      )
    )
  )

  it.effect("stops within seconds after feed handshakes it refused and ones whose clients left during them", () =>
    stopsWithin((url) =>
      Effect.gen(function* () {
        const alice = yield* makeUser("Alice")
        // a handshake `ws` refuses (no Sec-WebSocket-Key) from a signed-in user: answered 400, and over
        const refused = yield* Effect.promise(() =>
          answer(url, feedUpgrade(url, alice.token, ["Sec-WebSocket-Version: 13"]))
        )
        expect(refused).toMatch(/^HTTP\/1.1 400 /)
        // `Upgrade` without `Connection: Upgrade` is no upgrade to Node: an HTTP answer, never a 101 on a socket whose
        // bytes Node's HTTP parser still reads
        const notUpgrade = yield* Effect.promise(() =>
          answer(
            url,
            feedUpgrade(url, alice.token, VALID_HANDSHAKE).replace("Connection: Upgrade", "Connection: close")
          )
        )
        expect(notUpgrade).toMatch(/^HTTP\/1.1 426 /)
        yield* Effect.promise(() => leaveDuringHandshake(url, alice.token, 8, "end"))
        const feed = yield* Effect.promise(() => rawWebSocket(url, alice.token))
        return { closed: feed.ended }
      })
    )
  )

  it.effect("a client that resets its connection during a feed handshake costs the gateway nothing", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const maxConnectionsPerUser = 4
      const { url } = yield* Gateway.start({ host: "127.0.0.1", port: 0, feed: { maxConnectionsPerUser } }).pipe(
        Scope.extend(scope)
      )
      const alice = yield* makeUser("Alice")
      // resets and ends, signed in or not: none may end the process (an error no one listened to did), and none may
      // keep one of Alice's feed slots (a handshake that never ended kept its slot for as long as the gateway ran)
      yield* Effect.promise(() => leaveDuringHandshake(url, alice.token, 3 * maxConnectionsPerUser, "reset"))
      yield* Effect.promise(() => leaveDuringHandshake(url, "sam_pat_nope", maxConnectionsPerUser, "reset"))
      yield* Effect.promise(() => leaveDuringHandshake(url, alice.token, 3 * maxConnectionsPerUser, "end"))
      // the NATS WebSocket proxy's refusals too (a method other than GET), on the gateway that proxies it
      const proxying = yield* GatewayUrl
      yield* Effect.promise(() =>
        leaveDuringHandshake(
          proxying,
          "",
          20,
          "reset",
          `POST /nats HTTP/1.1\r\nHost: ${hostOf(proxying)}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n`
        )
      )
      // every slot: each feed greeted (`hello`), none closed for too many connections (asked again while the
      // gateway may still be letting the last of them go)
      const greeted = (feed: Feed) => feed.received().includes('"type":"hello"')
      const feeds = yield* waitUntil(
        "Alice's feed slots are all hers again",
        Effect.gen(function* () {
          const open = yield* Effect.promise(() =>
            Promise.all(Array.from({ length: maxConnectionsPerUser }, () => rawWebSocket(url, alice.token)))
          )
          yield* waitUntil(
            "each feed greeted or closed",
            Effect.sync(() => (open.every((f) => greeted(f) || f.ended()) ? true : undefined)),
            { timeout: "5 seconds", every: "20 millis" }
          )
          if (open.every(greeted)) return open
          for (const f of open) f.socket.destroy()
          return undefined
        }),
        { timeout: "10 seconds", every: "200 millis" }
      )
      expect(feeds).toHaveLength(maxConnectionsPerUser)
      for (const feed of feeds) feed.socket.destroy()
      yield* Scope.close(scope, Exit.void)
    })
  )

  it.effect("stops within seconds while a feed client never answers the close frame", () =>
    stopsWithin((url) =>
      Effect.gen(function* () {
        const alice = yield* makeUser("Alice")
        const feed = yield* Effect.promise(() => rawWebSocket(url, alice.token))
        return { closed: feed.ended }
      })
    )
  )
})
