import { createHmac, randomUUID } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { SecretBox } from "@sam/sql"
import { Effect, Redacted } from "effect"
import { afterAll, expect } from "vitest"
import { cookieOf, http, makeGatewayEnv, startFakeGitHub } from "../../src/index.js"

process.env.SAM_MASTER_KEY ??= Buffer.alloc(32, 7).toString("base64")

const client = { id: "Iv1.appclient", secret: "app-client-secret-value" }
const webhookSecret = "whsec-for-tests-0123456789"
const github = await startFakeGitHub(client)
afterAll(() => github.close())

const env = makeGatewayEnv({
  github: {
    clientId: client.id,
    clientSecret: Redacted.make(client.secret),
    webUrl: github.url,
    apiUrl: github.url,
    allowAny: true
  },
  githubApp: {
    appId: "4242",
    privateKey: Redacted.make("unused here"),
    webhookSecret: Redacted.make(webhookSecret),
    apiUrl: github.url,
    webUrl: github.url,
    slug: "sam-test-app"
  }
})

const sign = (body: string, secret = webhookSecret) =>
  `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`

const deliver = (event: string, payload: unknown, options: { delivery?: string; signature?: string } = {}) => {
  const raw = JSON.stringify(payload)
  return http("POST", "/api/v1/github/webhook", {
    raw,
    headers: {
      "content-type": "application/json",
      "x-github-event": event,
      "x-github-delivery": options.delivery ?? randomUUID(),
      "x-hub-signature-256": options.signature ?? sign(raw)
    }
  })
}

const installationEvent = (
  action: string,
  id: number,
  account: { login: string; id: number; type: string },
  sender: { login: string; id: number }
) => ({ action, installation: { id, account, app_id: 1, target_type: account.type }, sender, repositories: [] })

/** Sign in through the OAuth flow of the fake (with `read:org`), returning the session cookie. */
const signIn = (user: { id: number; login: string; name: string | null }) =>
  Effect.gen(function* () {
    const start = yield* http("GET", "/api/v1/auth/github")
    const authorize = new URL(start.headers.get("location") ?? "")
    const state = authorize.searchParams.get("state") ?? ""
    const redirectUri = authorize.searchParams.get("redirect_uri") ?? ""
    const code = github.authorize(user, redirectUri, "read:user read:org")
    const done = yield* http("GET", `${new URL(redirectUri).pathname}?code=${code}&state=${state}`, {
      headers: { cookie: `sam_oauth_state=${cookieOf(start.headers, "sam_oauth_state")}` }
    })
    expect(done.status, JSON.stringify(done.body)).toBe(302)
    return { cookie: `sam_session=${cookieOf(done.headers, "sam_session")}` }
  })

const installations = (cookie: string) =>
  Effect.map(http("GET", "/api/v1/github/installations", { headers: { cookie } }), (r) => {
    expect(r.status, JSON.stringify(r.body)).toBe(200)
    return r.body as { installations: Array<{ installationId: number; accountName: string }>; sync: string }
  })

const canonical = (id: number) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql<{ accountType: string; accountName: string; uninstalled: boolean }>`
      SELECT account_type, account_name, uninstalled_at IS NOT NULL AS uninstalled
      FROM github_installation_accounts WHERE installation_id = ${id}`
  )

layer(env, { excludeTestServices: true, timeout: 60_000 })("GitHub App installations", (it) => {
  it.effect("webhooks: a good signature is acted on once; a bad or missing one is refused; a replay is a no-op", () =>
    Effect.gen(function* () {
      const account = { login: "Nobody-Corp", id: 9001, type: "Organization" }
      const payload = installationEvent("created", 501, account, { login: "stranger", id: 77 })
      const raw = JSON.stringify(payload)
      const forged = yield* deliver("installation", payload, { signature: sign(raw, "not-the-secret") })
      expect(forged.status).toBe(401)
      expect(forged.body.code).toBe("unauthenticated")
      const missing = yield* http("POST", "/api/v1/github/webhook", {
        raw,
        headers: { "content-type": "application/json", "x-github-event": "installation", "x-github-delivery": "d-0" }
      })
      expect(missing.status).toBe(401)
      // the signature of another body
      const swapped = yield* deliver("installation", payload, { signature: sign(`${raw} `) })
      expect(swapped.status).toBe(401)
      expect(yield* canonical(501)).toHaveLength(0)

      // created by a sender who is not a SAM user: the canonical row only, no link to anyone
      const delivery = randomUUID()
      const good = yield* deliver("installation", payload, { delivery })
      expect(good.status, JSON.stringify(good.body)).toBe(200)
      expect(good.body).toEqual({ fresh: true, handled: true })
      expect(yield* canonical(501)).toEqual([
        { accountType: "organization", accountName: "Nobody-Corp", uninstalled: false }
      ])
      const sql = yield* SqlClient.SqlClient
      const links = yield* sql`SELECT 1 FROM github_installation_links WHERE installation_id = 501`
      expect(links).toHaveLength(0)

      // GitHub redelivers the same delivery after a deletion: nothing happens again
      const deleted = yield* deliver("installation", { ...payload, action: "deleted" })
      expect(deleted.body).toEqual({ fresh: true, handled: true })
      const replay = yield* deliver("installation", payload, { delivery })
      expect(replay.status).toBe(200)
      expect(replay.body).toEqual({ fresh: false, handled: false })
      expect((yield* canonical(501))[0]?.uninstalled).toBe(true)

      // unknown events and actions are acknowledged and ignored
      const push = yield* deliver("push", { ref: "refs/heads/main" })
      expect(push.body).toEqual({ fresh: true, handled: false })
      const suspend = yield* deliver("installation", { ...payload, action: "suspend" })
      expect(suspend.body).toEqual({ fresh: true, handled: false })
      // a malformed installation payload is refused, and its delivery id is not spent
      const bad = randomUUID()
      const malformed = yield* deliver("installation", { action: "created" }, { delivery: bad })
      expect(malformed.status).toBe(400)
      // (another installation: 501 was deleted, and a "created" never revives a deleted one)
      const again = yield* deliver(
        "installation",
        { ...payload, installation: { ...payload.installation, id: 503 } },
        { delivery: bad }
      )
      expect(again.body).toEqual({ fresh: true, handled: true })
      // hostile input, signed or not, is a clear 4xx
      const nul = yield* deliver("installation", {
        ...payload,
        installation: { id: 502, account: { ...account, login: "a\u0000b" } }
      })
      expect(nul.status).toBe(400)
      const notJson = yield* http("POST", "/api/v1/github/webhook", {
        raw: "{nope",
        headers: {
          "x-github-event": "installation",
          "x-github-delivery": randomUUID(),
          "x-hub-signature-256": sign("{nope")
        }
      })
      expect(notJson.status).toBe(400)
      expect(notJson.body.code).toBe("invalid_json")
      const oddDelivery = yield* deliver("installation", payload, { delivery: "../../x" })
      expect(oddDelivery.status).toBe(400)
      for (const id of ["%00", "1e308", "-1", "0", "x"]) {
        const r = yield* http("DELETE", `/api/v1/github/installations/${id}`, { headers: { cookie: "sam_session=x" } })
        expect(r.status, id).toBeGreaterThanOrEqual(400)
        expect(r.status, id).toBeLessThan(500)
      }
    })
  )

  it.effect("uninstall tombstones the installation and removes every link; an unlink removes only mine", () =>
    Effect.gen(function* () {
      const ada = { id: 1101, login: "ada", name: "Ada" }
      const bob = { id: 1102, login: "bob", name: "Bob" }
      github.setMembership("ada", "shared-org", "active")
      github.setMembership("bob", "shared-org", "active")
      const account = { login: "Shared-Org", id: 9100, type: "Organization" as const }
      github.install({
        id: 600,
        account,
        repositories: [{ id: 70, name: "app", private: true, defaultBranch: "main" }],
        access: new Set(["ada", "bob"])
      })
      const adaSession = yield* signIn(ada)
      const bobSession = yield* signIn(bob)
      // ada installs it: created with a SAM user as sender links her at once
      const created = yield* deliver("installation", installationEvent("created", 600, account, ada))
      expect(created.body).toEqual({ fresh: true, handled: true })
      const sql = yield* SqlClient.SqlClient
      const linked = () =>
        sql<{ userId: string }>`SELECT user_id FROM github_installation_links WHERE installation_id = 600`
      expect(yield* linked()).toHaveLength(1)
      // bob finds it by shared-organisation discovery (verified with his own token)
      const bobs = yield* installations(bobSession.cookie)
      expect(bobs.sync).toBe("done")
      expect(bobs.installations).toEqual([
        { installationId: 600, accountType: "organization", accountName: "Shared-Org" }
      ])
      expect(yield* linked()).toHaveLength(2)
      const repos = yield* http("GET", "/api/v1/github/installations/600/repositories", { headers: adaSession })
      expect(repos.status, JSON.stringify(repos.body)).toBe(200)
      expect(repos.body.repositories).toEqual([
        { id: 70, fullName: "Shared-Org/app", name: "app", owner: "Shared-Org", private: true, defaultBranch: "main" }
      ])

      // bob unlinks: his link goes, ada's and the canonical row stay
      const unlinked = yield* http("DELETE", "/api/v1/github/installations/600", { headers: bobSession })
      expect(unlinked.body).toEqual({ unlinked: true })
      expect(yield* linked()).toHaveLength(1)
      expect((yield* canonical(600))[0]?.uninstalled).toBe(false)
      const notMine = yield* http("GET", "/api/v1/github/installations/600/repositories", { headers: bobSession })
      expect(notMine.status).toBe(404)

      // uninstalled on GitHub: tombstoned, every link gone, nobody lists it, discovery does not bring it back
      const deleted = yield* deliver("installation", installationEvent("deleted", 600, account, ada))
      expect(deleted.body).toEqual({ fresh: true, handled: true })
      expect(yield* linked()).toHaveLength(0)
      expect((yield* canonical(600))[0]?.uninstalled).toBe(true)
      github.installations.delete(600)
      expect((yield* installations(adaSession.cookie)).installations).toEqual([])
      expect(yield* linked()).toHaveLength(0)
    })
  )

  it.effect("discovery links only verified installations of my organisations; 403, 404 and failures are skipped", () =>
    Effect.gen(function* () {
      const cy = { id: 1201, login: "cy", name: null }
      github.setMembership("cy", "verified-org", "active")
      github.setMembership("cy", "denied-org", "active")
      github.setMembership("cy", "hidden-org", "active")
      github.setMembership("cy", "broken-org", "active")
      github.setMembership("cy", "invited-org", "pending")
      const org = (login: string, id: number) => ({ login, id, type: "Organization" as const })
      const known = [
        { id: 701, account: org("Verified-Org", 9201), access: ["cy"] },
        { id: 702, account: org("Denied-Org", 9202), access: [], failWith: 403 },
        { id: 703, account: org("Hidden-Org", 9203), access: [] },
        { id: 704, account: org("Broken-Org", 9204), access: ["cy"], failWith: 500 },
        { id: 705, account: org("Invited-Org", 9205), access: ["cy"] },
        { id: 706, account: org("Other-Org", 9206), access: ["cy"] }
      ]
      // the canonical rows come from webhooks sent by someone who is not a SAM user
      for (const k of known) {
        github.install({
          id: k.id,
          account: k.account,
          repositories: [],
          access: new Set(k.access),
          ...(k.failWith === undefined ? {} : { failWith: k.failWith })
        })
        yield* deliver("installation", installationEvent("created", k.id, k.account, { login: "admin", id: 5 }))
      }
      const { cookie } = yield* signIn(cy)
      const seen = yield* installations(cookie)
      expect(seen.sync).toBe("done")
      // 701 verified; 702 (403) and 703 (404) skipped; 704 (500) skipped without breaking the list;
      // 705 (a pending invitation) and 706 (not a member) never asked
      expect(seen.installations.map((i) => i.installationId)).toEqual([701])

      // a discovery failure (GitHub refuses a revoked token: 401) keeps what is known
      const sql = yield* SqlClient.SqlClient
      const revoked = yield* SecretBox.seal("gho_revoked000000000000000000000000")
      yield* sql`UPDATE github_user_tokens SET sealed = ${revoked}`
      const failed = yield* installations(cookie)
      expect(failed.sync).toBe("failed")
      expect(failed.installations.map((i) => i.installationId)).toEqual([701])
    })
  )

  it.effect(
    "install link and Setup URL; my own personal installation is linked by sync; GitHub's token is nowhere in the ledger in clear",
    () =>
      Effect.gen(function* () {
        const dee = { id: 1301, login: "dee", name: "Dee" }
        github.install({
          id: 801,
          account: { login: "dee", id: 1301, type: "User" },
          repositories: [{ id: 81, name: "notes", private: false, defaultBranch: "trunk" }],
          access: new Set(["dee"])
        })
        // someone else's personal installation that dee can see is recorded, not linked
        github.install({
          id: 802,
          account: { login: "eve", id: 1302, type: "User" },
          repositories: [],
          access: new Set(["dee"])
        })
        const { cookie } = yield* signIn(dee)
        const install = yield* http("GET", "/api/v1/github/install", { headers: { cookie } })
        expect(install.status).toBe(302)
        expect(install.headers.get("location")).toBe(`${github.url}/apps/sam-test-app/installations/new`)
        // GitHub sends dee back to the Setup URL: SAM syncs as dee (the query's id is not trusted)
        const setup = yield* http("GET", "/api/v1/github/setup?installation_id=802&setup_action=install", {
          headers: { cookie }
        })
        expect(setup.status).toBe(302)
        expect(setup.headers.get("location")).toBe("/settings")
        const sql0 = yield* SqlClient.SqlClient
        const linkedNow = yield* sql0<{ id: number }>`
        SELECT installation_id::float8 AS id FROM github_installation_links l JOIN users u ON u.id = l.user_id
        WHERE u.github_id = ${dee.id}`
        expect(linkedNow).toEqual([{ id: 801 }])
        const seen = yield* installations(cookie)
        expect(seen.installations).toEqual([{ installationId: 801, accountType: "personal", accountName: "dee" }])
        expect((yield* canonical(802))[0]?.accountType).toBe("personal")
        const sql = yield* SqlClient.SqlClient
        const dump = yield* sql<{ t: string }>`SELECT row_to_json(t)::text AS t FROM github_user_tokens t`
        expect(dump.length).toBeGreaterThan(0)
        expect(dump.map((r) => r.t).join()).not.toContain("gho_")
      })
  )
})
