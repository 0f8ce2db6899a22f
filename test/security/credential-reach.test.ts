import { request } from "node:http"
import { layer } from "@effect/vitest"
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
        if (own.status === 101) {
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
        if (tokenFeed.status === 101) tokenFeed.socket.close()
        // … and the session the other page tried to end still works.
        expect((yield* asBrowser("GET", "/api/v1/me", cookie)).status).toBe(200)
      })
  )
})
