import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { afterAll, expect } from "vitest"
import { cookieOf, http, makeGatewayEnv, startFakeGitHub } from "../../src/index.js"

process.env.SAM_MASTER_KEY ??= Buffer.alloc(32, 7).toString("base64")

// A GitHub App's user tokens expire (GitHub: eight hours) and come with a single-use refresh token. These
// live 200 s: less than SAM's five-minute margin, so SAM renews one before every use.
const client = { id: "Iv1.refreshclient", secret: "refresh-client-secret" }
const github = await startFakeGitHub(client, undefined, { userTokenLifetimeSeconds: 200 })
afterAll(() => github.close())
github.install({
  id: 7301,
  account: { login: "grace", id: 2301, type: "User" },
  repositories: [{ id: 731, name: "notes", private: true, defaultBranch: "main" }],
  access: new Set(["grace"])
})

const env = makeGatewayEnv({
  github: {
    clientId: client.id,
    clientSecret: Redacted.make(client.secret),
    webUrl: github.url,
    apiUrl: github.url,
    allowAny: true
  },
  githubApp: {
    appId: "7373",
    privateKey: Redacted.make("unused here"),
    webhookSecret: Redacted.make("whsec-refresh"),
    apiUrl: github.url,
    webUrl: github.url
  }
})

layer(env, { excludeTestServices: true, timeout: 60_000 })("GitHub user tokens that expire", (it) => {
  it.effect(
    "an expiring user token is renewed with its refresh token before use; a refused renewal fails the sync, not the list",
    () =>
      Effect.gen(function* () {
        const start = yield* http("GET", "/api/v1/auth/github")
        const authorize = new URL(start.headers.get("location") ?? "")
        const redirectUri = authorize.searchParams.get("redirect_uri") ?? ""
        const code = github.authorize({ id: 2301, login: "grace", name: "Grace" }, redirectUri, "read:user read:org")
        const done = yield* http(
          "GET",
          `${new URL(redirectUri).pathname}?code=${code}&state=${authorize.searchParams.get("state")}`,
          {
            headers: { cookie: `sam_oauth_state=${cookieOf(start.headers, "sam_oauth_state")}` }
          }
        )
        expect(done.status).toBe(302)
        const headers = { cookie: `sam_session=${cookieOf(done.headers, "sam_session")}` }
        // the token from the sign-in is dead at GitHub now: only a renewed one gets through
        github.expireUserTokens("grace")
        const first = yield* http("GET", "/api/v1/github/installations", { headers })
        expect(first.body).toMatchObject({ sync: "done", installations: [{ installationId: 7301 }] })
        expect(github.refreshes).toEqual([{ ok: true }])
        // the refresh token is single use: the renewed one was kept and is used next
        const second = yield* http("GET", "/api/v1/github/installations/7301/repositories", { headers })
        expect(second.status, JSON.stringify(second.body)).toBe(200)
        expect(github.refreshes).toEqual([{ ok: true }, { ok: true }])
        // kept sealed: neither token is in the ledger in clear
        const sql = yield* SqlClient.SqlClient
        const [row] = yield* sql<{ sealed: string }>`SELECT sealed FROM github_user_tokens`
        expect(row?.sealed).not.toMatch(/gh[or]_/)
        // GitHub refuses the renewal (the refresh token revoked): the list is still answered, the sync failed
        github.refreshTokens.clear()
        github.expireUserTokens("grace")
        const refused = yield* http("GET", "/api/v1/github/installations", { headers })
        expect(refused.status).toBe(200)
        expect(refused.body).toMatchObject({ sync: "failed", installations: [{ installationId: 7301 }] })
        expect(github.refreshes.at(-1)).toEqual({ ok: false })
      })
  )
})
