import { createHmac, randomUUID } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { makeId } from "@sam/bus"
import { Effect, Redacted } from "effect"
import { afterAll, expect } from "vitest"
import { http, makeGatewayEnv, startFakeGitHub } from "../src/index.js"

/**
 * GitHub signs a webhook's body, not its delivery id (X-GitHub-Delivery): whoever captured one signed
 * delivery can send that body again under a new id. Deduplication by id does not stop that; what the body
 * does must be harmless the second time. An uninstall followed by the replayed "created" must not bring the
 * installation, or anyone's link to it, back.
 */

const webhookSecret = "whsec-security-0123456789"
const github = await startFakeGitHub({ id: "Iv1.sec", secret: "sec-client-secret" })
afterAll(() => github.close())

const env = makeGatewayEnv({
  githubApp: {
    appId: "4243",
    privateKey: Redacted.make("unused here"),
    webhookSecret: Redacted.make(webhookSecret),
    apiUrl: github.url,
    webUrl: github.url,
    slug: "sam-sec-app"
  }
})

/** The exact bytes and signature GitHub sent: what an eavesdropper or a leaked log would hold. */
const captured = (payload: unknown) => {
  const raw = JSON.stringify(payload)
  return { raw, signature: `sha256=${createHmac("sha256", webhookSecret).update(raw).digest("hex")}` }
}

const send = (event: string, delivery: { raw: string; signature: string }, id = randomUUID()) =>
  http("POST", "/api/v1/github/webhook", {
    raw: delivery.raw,
    headers: {
      "content-type": "application/json",
      "x-github-event": event,
      "x-github-delivery": id,
      "x-hub-signature-256": delivery.signature
    }
  })

layer(env, { excludeTestServices: true, timeout: 60_000 })("GitHub webhook replays", (it) => {
  it.effect("a captured 'created' replayed under a new delivery id after an uninstall revives nothing", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const userId = makeId("user")
      const ghUser = { login: "grace", id: 4711 }
      yield* sql`INSERT INTO users (id, display_name, github_id) VALUES (${userId}, 'Grace', ${ghUser.id})`
      const installation = { id: 7001, account: { ...ghUser, type: "User" }, app_id: 1, target_type: "User" }
      const created = captured({ action: "created", installation, sender: ghUser, repositories: [] })
      const deleted = captured({ action: "deleted", installation, sender: ghUser })

      expect((yield* send("installation", created)).body).toEqual({ fresh: true, handled: true })
      const linked = () =>
        sql<{ n: number }>`SELECT count(*)::int AS n FROM github_installation_links WHERE installation_id = 7001`
      expect((yield* linked())[0]?.n).toBe(1)
      expect((yield* send("installation", deleted)).body).toEqual({ fresh: true, handled: true })

      const replay = yield* send("installation", created)
      expect(replay.status).toBe(200)
      expect(replay.body).toEqual({ fresh: true, handled: false })
      const row = yield* sql<{ uninstalled: boolean }>`
        SELECT uninstalled_at IS NOT NULL AS uninstalled FROM github_installation_accounts WHERE installation_id = 7001`
      expect(row[0]?.uninstalled).toBe(true)
      expect((yield* linked())[0]?.n).toBe(0)
      // The deletion replayed is harmless too.
      expect((yield* send("installation", deleted)).body).toEqual({ fresh: true, handled: true })
      expect((yield* linked())[0]?.n).toBe(0)
    })
  )
})
