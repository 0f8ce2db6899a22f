import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { afterAll, expect } from "vitest"
import { cookieOf, http, makeGatewayEnv, startFakeGitHub } from "../../src/index.js"

const client = { id: "Iv1.testclient", secret: "test-client-secret-value" }
const github = await startFakeGitHub(client)
afterAll(() => github.close())

const env = makeGatewayEnv({
  github: {
    clientId: client.id,
    clientSecret: Redacted.make(client.secret),
    webUrl: github.url,
    apiUrl: github.url,
    allowAny: true
  }
})

/** The browser's part: start, "authorize" at GitHub, come back to the callback with the state cookie. */
const signIn = (user: { id: number; login: string; name: string | null }) =>
  Effect.gen(function* () {
    const start = yield* http("GET", "/api/v1/auth/github", { headers: {} })
    expect(start.status, JSON.stringify(start.body)).toBe(302)
    const authorize = new URL(start.headers.get("location") ?? "")
    expect(authorize.origin).toBe(github.url)
    expect(authorize.pathname).toBe("/login/oauth/authorize")
    expect(authorize.searchParams.get("client_id")).toBe(client.id)
    const state = authorize.searchParams.get("state") ?? ""
    const redirectUri = authorize.searchParams.get("redirect_uri") ?? ""
    const stateCookie = cookieOf(start.headers, "sam_oauth_state")
    expect(stateCookie).toBe(state)
    const code = github.authorize(user, redirectUri)
    const back = new URL(redirectUri)
    return yield* http("GET", `${back.pathname}?code=${code}&state=${state}`, {
      headers: { cookie: `sam_oauth_state=${stateCookie}` }
    })
  })

layer(env, { excludeTestServices: true, timeout: 60_000 })("gateway: GitHub sign-in", (it) => {
  it.effect("signs a GitHub user in with a session cookie, the same account on every sign-in", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const octo = { id: 583231, login: "Octocat", name: "The Octocat" }
      const done = yield* signIn(octo)
      expect(done.status).toBe(302)
      expect(done.headers.get("location")).toBe("/")
      const session = cookieOf(done.headers, "sam_session") ?? ""
      expect(session).toMatch(/^sam_ses_/)
      const me = yield* http("GET", "/api/v1/me", { headers: { cookie: `sam_session=${session}` } })
      expect(me.status).toBe(200)
      expect(me.body).toMatchObject({ githubLogin: "octocat", displayName: "The Octocat", via: "session" })
      // GitHub's access token and our client secret are nowhere in what the browser got.
      expect(JSON.stringify(me.body)).not.toContain(client.secret)
      expect(done.headers.get("set-cookie")).not.toContain("gho_")

      const again = yield* signIn({ ...octo, login: "octo-renamed" })
      expect(again.status).toBe(302)
      const users = yield* sql<{ id: string; githubLogin: string }>`
        SELECT id, github_login FROM users WHERE github_id = ${octo.id}`
      expect(users).toHaveLength(1)
      expect(users[0]?.githubLogin).toBe("octo-renamed")
      const logout = yield* http("POST", "/api/v1/auth/logout", { headers: { cookie: `sam_session=${session}` } })
      expect(logout.status).toBe(200)
      expect((yield* http("GET", "/api/v1/me", { headers: { cookie: `sam_session=${session}` } })).status).toBe(401)
    })
  )

  it.effect("a forged or replayed callback signs nobody in", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const before = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM user_sessions`
      // no state cookie: a link opened elsewhere, or a CSRF attempt
      const code = github.authorize({ id: 1, login: "mallory", name: null }, "x")
      const forged = yield* http("GET", `/api/v1/auth/github/callback?code=${code}&state=abc`)
      expect(forged.status).toBe(400)
      expect(forged.body.code).toBe("invalid_query")
      // a code GitHub does not know
      const bad = yield* http("GET", "/api/v1/auth/github/callback?code=nope&state=s1", {
        headers: { cookie: "sam_oauth_state=s1" }
      })
      expect(bad.status).toBe(401)
      expect(bad.body.message).toContain("incorrect or expired")
      // the user declined at GitHub
      const declined = yield* http("GET", "/api/v1/auth/github/callback?error=access_denied&state=s1", {
        headers: { cookie: "sam_oauth_state=s1" }
      })
      expect(declined.status).toBe(401)
      const after = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM user_sessions`
      expect(after[0]?.n).toBe(before[0]?.n)
    })
  )
})
