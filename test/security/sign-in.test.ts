import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Gateway } from "@sam/gateway"
import { Effect, Redacted } from "effect"
import { afterAll, expect } from "vitest"
import { cookieOf, GatewayUrl, http, makeGatewayEnv, makeUser, startFakeGitHub } from "../src/index.js"

const client = { id: "Iv1.securityclient", secret: "security-client-secret" }
const github = await startFakeGitHub(client)
afterAll(() => github.close())

const oauth = {
  clientId: client.id,
  clientSecret: Redacted.make(client.secret),
  webUrl: github.url,
  apiUrl: github.url
}
const env = makeGatewayEnv({ github: { ...oauth, allowedLogins: ["alice-gh"], allowedOrgs: ["acme"] } })

/** The browser's part of the OAuth flow; the user authorizes whatever scopes the gateway asked for. */
const signIn = (user: { id: number; login: string; name: string | null }) =>
  Effect.gen(function* () {
    const start = yield* http("GET", "/api/v1/auth/github")
    if (start.status !== 302) return start
    const authorize = new URL(start.headers.get("location") ?? "")
    const state = authorize.searchParams.get("state") ?? ""
    const redirectUri = authorize.searchParams.get("redirect_uri") ?? ""
    const code = github.authorize(user, redirectUri, authorize.searchParams.get("scope") ?? "")
    return yield* http("GET", `${new URL(redirectUri).pathname}?code=${code}&state=${state}`, {
      headers: { cookie: `sam_oauth_state=${cookieOf(start.headers, "sam_oauth_state")}` }
    })
  })

const accountOf = (githubId: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql<{ id: string }>`SELECT id FROM users WHERE github_id = ${githubId}`)

layer(env, { excludeTestServices: true, timeout: 60_000 })("security: GitHub sign-in allowlist", (it) => {
  it.effect("a GitHub user neither listed nor in an allowed organization is refused and gets no account", () =>
    Effect.gen(function* () {
      const mallory = { id: 666001, login: "Mallory", name: "Mallory" }
      github.setMembership("mallory", "other-org", "active")
      github.setMembership("mallory", "acme", "pending")
      const refused = yield* signIn(mallory)
      expect(refused.status).toBe(403)
      expect(refused.body.code).toBe("forbidden")
      expect(refused.body.message).toContain("SAM_GITHUB_ALLOWED_LOGINS")
      expect(cookieOf(refused.headers, "sam_session")).toBeUndefined()
      expect(yield* accountOf(mallory.id)).toEqual([])
    })
  )

  it.effect("a listed login and an active member of an allowed organization sign in, and see no project", () =>
    Effect.gen(function* () {
      const owner = yield* makeUser("Owner")
      const project = yield* http("POST", "/api/v1/projects", {
        token: owner.token,
        body: { name: "private", repoUrl: "https://example.com/acme/private.git" }
      })
      expect(project.status).toBe(201)

      const alice = { id: 700001, login: "Alice-GH", name: null }
      const bob = { id: 700002, login: "bob-acme", name: "Bob" }
      github.setMembership("bob-acme", "ACME", "active")
      for (const user of [alice, bob]) {
        const done = yield* signIn(user)
        expect(done.status, JSON.stringify(done.body)).toBe(302)
        const session = cookieOf(done.headers, "sam_session") ?? ""
        const projects = yield* http("GET", "/api/v1/projects", { headers: { cookie: `sam_session=${session}` } })
        expect(projects.status).toBe(200)
        expect(projects.body.projects).toEqual([])
        const other = yield* http("GET", `/api/v1/projects/${project.body.id}`, {
          headers: { cookie: `sam_session=${session}` }
        })
        expect(other.status).toBe(403)
        expect(yield* accountOf(user.id)).toHaveLength(1)
      }
    })
  )

  it.scoped("with no allowlist configured, GitHub sign-in refuses everyone and says what to set", () =>
    Effect.gen(function* () {
      const { url } = yield* Gateway.start({ host: "127.0.0.1", port: 0, github: oauth })
      const start = yield* http("GET", "/api/v1/auth/github").pipe(Effect.provideService(GatewayUrl, url))
      expect(start.status).toBe(403)
      expect(start.body.message).toContain("SAM_GITHUB_ALLOWED_LOGINS")
      expect(start.body.message).toContain("SAM_GITHUB_ALLOWED_ORGS")
      expect(start.body.message).toContain("SAM_GITHUB_ALLOW_ANY=1")
      // A callback reached anyway (a link from before the change) creates nothing either.
      const carol = { id: 700003, login: "carol", name: null }
      const redirectUri = `${url}/api/v1/auth/github/callback`
      const code = github.authorize(carol, redirectUri)
      const state = "s".repeat(32)
      const back = yield* http("GET", `/api/v1/auth/github/callback?code=${code}&state=${state}`, {
        headers: { cookie: `sam_oauth_state=${state}` }
      }).pipe(Effect.provideService(GatewayUrl, url))
      expect(back.status).toBe(403)
      expect(yield* accountOf(carol.id)).toEqual([])
    })
  )
})
