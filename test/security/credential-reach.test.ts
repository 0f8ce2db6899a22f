import { request } from "node:http"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Api } from "@sam/bus"
import { LocalOwner } from "@sam/gateway"
import { nodeWebSocket } from "@sam/gateway/client"
import { Effect } from "effect"
import { expect } from "vitest"
import { waitUntil } from "../src/Env.js"
import { cookieOf, GatewayEnv, GatewayUrl, http, makeUser } from "../src/index.js"
import { makePasswordUser } from "./SecurityKit.js"

/** A page of another origin the browser also sends the cookie from (same site): a dev server an agent started. */
const ELSEWHERE = "http://localhost:5173"

const signIn = (login: string, password: string) =>
  Effect.gen(function* () {
    const signedIn = yield* http("POST", "/api/v1/auth/login", { body: { login, password } })
    expect(signedIn.status).toBe(200)
    return `sam_session=${cookieOf(signedIn.headers, "sam_session")}`
  })

/** What a browser sends with the cookie: the page's `Origin`, when it is given. */
const asBrowser = (method: string, path: string, cookie: string, origin?: string, body?: unknown) =>
  http(method, path, { headers: { cookie, ...(origin === undefined ? {} : { origin }) }, body })

/** A feed upgrade with these headers: the open socket with its close, or the HTTP status it was refused with. */
const openFeed = (baseUrl: string, headers: Record<string, string>) =>
  Effect.promise(async () => {
    const WS = await nodeWebSocket()
    const socket = new WS(`${baseUrl.replace(/^http/, "ws")}/api/v1/feed`, { headers })
    socket.on("error", () => {})
    let closed: number | undefined
    socket.on("close", (code) => {
      closed = code
    })
    let hello = false
    socket.on("message", (data) => {
      if ((JSON.parse(String(data)) as { type: string }).type === "hello") hello = true
    })
    return new Promise<
      | {
          readonly status: 101
          readonly socket: typeof socket
          readonly hello: () => boolean
          readonly closed: () => number | undefined
        }
      | { readonly status: number; readonly body: string }
    >((resolve) => {
      socket.on("open", () => resolve({ status: 101, socket, hello: () => hello, closed: () => closed }))
      socket.on("unexpected-response", (_req, res) => {
        let body = ""
        res.on("data", (chunk: Buffer) => {
          body += chunk.toString()
        })
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
      })
    })
  })

/** One request with a `Host` header of our choosing (fetch sets its own): a browser that reached the gateway by another name. */
const withHost = (baseUrl: string, path: string, headers: Record<string, string>, body: unknown) =>
  Effect.promise(
    () =>
      new Promise<number>((resolve, reject) => {
        const url = new URL(path, baseUrl)
        const req = request(
          url,
          { method: "POST", headers: { ...headers, "content-type": "application/json" } },
          (res) => {
            res.resume()
            res.on("end", () => resolve(res.statusCode ?? 0))
          }
        )
        req.on("error", reject)
        req.end(JSON.stringify(body))
      })
  )

layer(GatewayEnv, { excludeTestServices: true, timeout: 60_000 })("security: how far a credential reaches", (it) => {
  it.effect(
    "a page of another origin cannot act or read the feed with the session cookie; the app's own pages can",
    () =>
      Effect.gen(function* () {
        const url = yield* GatewayUrl
        yield* makePasswordUser("alice", "alice-password-1")
        const cookie = yield* signIn("alice", "alice-password-1")
        const project = { name: "p", repoUrl: "https://example.com/p.git" }

        // `<form method=POST action=http://localhost:8080/api/v1/auth/logout>` on the other page: no body, no JSON.
        const logout = yield* asBrowser("POST", "/api/v1/auth/logout", cookie, ELSEWHERE)
        expect(logout.status, JSON.stringify(logout.body)).toBe(403)
        expect(logout.body.code).toBe("forbidden")
        expect(logout.body.message).toContain(ELSEWHERE)
        const created = yield* asBrowser("POST", "/api/v1/projects", cookie, ELSEWHERE, project)
        expect(created.status).toBe(403)
        expect((yield* asBrowser("POST", "/api/v1/projects", cookie, "null", project)).status).toBe(403)
        const feed = yield* openFeed(url, { cookie, origin: ELSEWHERE })
        expect(feed.status).toBe(403)

        // The gateway's own pages (by its public URL, or by whatever name the browser reached it: `Host`).
        expect((yield* asBrowser("POST", "/api/v1/projects", cookie, url, project)).status).toBe(201)
        const port = new URL(url).port
        const otherName = { cookie, host: `localhost:${port}`, origin: `http://localhost:${port}` }
        expect(yield* withHost(url, "/api/v1/projects", otherName, project)).toBe(201)
        expect(yield* withHost(url, "/api/v1/projects", { ...otherName, origin: ELSEWHERE }, project)).toBe(403)
        const own = yield* openFeed(url, { cookie, origin: url })
        expect(own.status).toBe(101)
        if ("socket" in own) {
          yield* waitUntil(
            "hello",
            Effect.sync(() => (own.hello() ? true : undefined)),
            { timeout: "10 seconds" }
          )
          own.socket.close()
        }
        // Reads stay open (the browser keeps another origin from reading the answer); programs send no Origin.
        expect((yield* asBrowser("GET", "/api/v1/projects", cookie, ELSEWHERE)).status).toBe(200)
        expect((yield* asBrowser("POST", "/api/v1/projects", cookie, undefined, project)).status).toBe(201)
        // A bearer token is never sent by a browser on its own: any Origin may use one.
        const bob = yield* makeUser("Bob")
        const withToken = yield* http("POST", "/api/v1/projects", {
          token: bob.token,
          headers: { origin: ELSEWHERE },
          body: project
        })
        expect(withToken.status).toBe(201)
        const tokenFeed = yield* openFeed(url, { authorization: `Bearer ${bob.token}`, origin: ELSEWHERE })
        expect(tokenFeed.status).toBe(101)
        if ("socket" in tokenFeed) tokenFeed.socket.close()
        // … and the session the other page tried to end still works.
        expect((yield* asBrowser("GET", "/api/v1/me", cookie)).status).toBe(200)
      })
  )

  it.effect("an API token cannot make a token or NATS credentials that outlive it", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const alice = yield* makeUser("Alice")
      const short = yield* http("POST", "/api/v1/tokens", {
        token: alice.token,
        body: { name: "short", expiresInDays: 1 }
      })
      expect(short.status).toBe(201)
      const shortExpiry = Date.parse(short.body.expiresAt)
      const child = yield* http("POST", "/api/v1/tokens", { token: short.body.token, body: { name: "child" } })
      expect(child.status).toBe(201)
      expect(child.body.expiresAt, "a token without expiry made with a 1-day token").not.toBeNull()
      expect(Date.parse(child.body.expiresAt)).toBeLessThanOrEqual(shortExpiry)
      const longer = yield* http("POST", "/api/v1/tokens", {
        token: short.body.token,
        body: { name: "longer", expiresInDays: 30 }
      })
      expect(longer.status).toBe(403)
      expect(longer.body.message).toContain(short.body.expiresAt)
      // NATS credentials (at most 24 h) stop with the token too.
      yield* sql`UPDATE api_tokens SET expires_at = now() + interval '1 hour' WHERE id = ${short.body.id}`
      const [row] = yield* sql<{ expiresAt: Date }>`SELECT expires_at FROM api_tokens WHERE id = ${short.body.id}`
      const creds = yield* http("POST", "/api/v1/nats/credentials", {
        token: short.body.token,
        body: { expiresInHours: 24 }
      })
      expect(creds.status).toBe(201)
      expect(Date.parse(creds.body.expiresAt)).toBeLessThanOrEqual(row!.expiresAt.getTime())
      // A token that never expires, and a signed-in user, still make tokens that never expire.
      const forever = yield* http("POST", "/api/v1/tokens", { token: alice.token, body: { name: "forever" } })
      expect(forever.body.expiresAt).toBeNull()
      yield* makePasswordUser("carol", "carol-password-1")
      const cookie = yield* signIn("carol", "carol-password-1")
      const fromSession = yield* asBrowser("POST", "/api/v1/tokens", cookie, undefined, { name: "cli" })
      expect(fromSession.status).toBe(201)
      expect(fromSession.body.expiresAt).toBeNull()
    })
  )

  it.effect("a new owner password ends the owner's sign-in sessions and closes their feeds at once", () =>
    Effect.gen(function* () {
      const url = yield* GatewayUrl
      yield* makePasswordUser(LocalOwner.OWNER_LOGIN, "owner-password-1")
      const cookie = yield* signIn(LocalOwner.OWNER_LOGIN, "owner-password-1")
      const feed = yield* openFeed(url, { cookie })
      expect(feed.status).toBe(101)
      if (!("socket" in feed)) return
      yield* waitUntil(
        "hello",
        Effect.sync(() => (feed.hello() ? true : undefined)),
        { timeout: "10 seconds" }
      )
      expect((yield* asBrowser("GET", "/api/v1/me", cookie)).status).toBe(200)

      const password = yield* LocalOwner.resetPassword()
      expect(password).toBeDefined()
      const after = yield* asBrowser("GET", "/api/v1/me", cookie)
      expect(after.status, "the session signed in with the old password").toBe(401)
      // The feed's own recheck is a minute away: the reset itself closes it.
      const code = yield* waitUntil("the feed closes", Effect.sync(feed.closed), { timeout: "10 seconds" })
      expect(code).toBe(Api.FeedClose.unauthenticated)
      const old = yield* http("POST", "/api/v1/auth/login", {
        body: { login: LocalOwner.OWNER_LOGIN, password: "owner-password-1" }
      })
      expect(old.status).toBe(401)
      const fresh = yield* http("POST", "/api/v1/auth/login", {
        body: { login: LocalOwner.OWNER_LOGIN, password: password as string }
      })
      expect(fresh.status).toBe(200)
    })
  )
})
