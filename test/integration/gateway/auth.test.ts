import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Effect } from "effect"
import { expect } from "vitest"
import { GatewayEnv, http, makeUser } from "../../src/index.js"

layer(GatewayEnv, { excludeTestServices: true, timeout: 60_000 })("gateway: auth and projects", (it) => {
  it.effect("an API token signs in; a project I create is mine and only mine", () =>
    Effect.gen(function* () {
      const alice = yield* makeUser("Alice")
      const bob = yield* makeUser("Bob")
      expect((yield* http("GET", "/api/v1/me")).status).toBe(401)
      const me = yield* http("GET", "/api/v1/me", { token: alice.token })
      expect(me.status).toBe(200)
      expect(me.body).toMatchObject({ userId: alice.userId, via: "token" })

      const created = yield* http("POST", "/api/v1/projects", {
        token: alice.token,
        body: { name: "demo", repoUrl: "https://example.com/demo.git" }
      })
      expect(created.status).toBe(201)
      expect(created.body).toMatchObject({ name: "demo", role: "owner", ownerId: alice.userId })
      const id = created.body.id as string
      expect((yield* http("GET", `/api/v1/projects/${id}`, { token: alice.token })).status).toBe(200)
      const refused = yield* http("GET", `/api/v1/projects/${id}`, { token: bob.token })
      expect(refused.status).toBe(403)
      expect(refused.body.code).toBe("forbidden")
      const bobs = yield* http("GET", "/api/v1/projects", { token: bob.token })
      expect(bobs.body.projects).toEqual([])
    })
  )

  it.effect("a token is shown once, listed without its value, and stops working when revoked", () =>
    Effect.gen(function* () {
      const alice = yield* makeUser("Alice")
      const created = yield* http("POST", "/api/v1/tokens", { token: alice.token, body: { name: "ci" } })
      expect(created.status).toBe(201)
      const secret = created.body.token as string
      expect(secret).toMatch(/^sam_pat_/)
      const list = yield* http("GET", "/api/v1/tokens", { token: secret })
      expect(list.status).toBe(200)
      expect(JSON.stringify(list.body)).not.toContain(secret)
      expect(JSON.stringify(list.body)).not.toContain(alice.token)
      expect(list.body.tokens.map((t: { name: string }) => t.name).sort()).toEqual(["ci", "test"])
      const revoked = yield* http("DELETE", `/api/v1/tokens/${created.body.id}`, { token: alice.token })
      expect(revoked.status).toBe(200)
      expect(revoked.body.revokedAt).not.toBeNull()
      const after = yield* http("GET", "/api/v1/me", { token: secret })
      expect(after.status).toBe(401)
      expect(after.body.code).toBe("unauthenticated")
    })
  )

  it.effect("a token's last use is shown to the minute, not written on every request", () =>
    Effect.gen(function* () {
      const alice = yield* makeUser("Alice")
      const created = yield* http("POST", "/api/v1/tokens", { token: alice.token, body: { name: "bot" } })
      const secret = created.body.token as string
      const lastUsed = Effect.gen(function* () {
        const list = yield* http("GET", "/api/v1/tokens", { token: alice.token })
        return list.body.tokens.find((t: { id: string }) => t.id === created.body.id).lastUsedAt as string | null
      })
      expect(yield* lastUsed).toBeNull()
      expect((yield* http("GET", "/api/v1/me", { token: secret })).status).toBe(200)
      const first = yield* lastUsed
      expect(first).not.toBeNull()
      // used again at once: still signs in, and the time stays that of the first use
      expect((yield* http("GET", "/api/v1/me", { token: secret })).status).toBe(200)
      expect(yield* lastUsed).toBe(first)
      // a minute later, a use is written again
      const sql = yield* SqlClient.SqlClient
      yield* sql`UPDATE api_tokens SET last_used_at = now() - interval '2 minutes' WHERE id = ${created.body.id}`
      const aged = yield* lastUsed
      expect((yield* http("GET", "/api/v1/me", { token: secret })).status).toBe(200)
      const later = yield* lastUsed
      expect(Date.parse(later!)).toBeGreaterThan(Date.parse(aged!) + 60_000)
      // a revoked token is refused whatever its last use
      yield* http("DELETE", `/api/v1/tokens/${created.body.id}`, { token: alice.token })
      expect((yield* http("GET", "/api/v1/me", { token: secret })).status).toBe(401)
    })
  )

  it.effect("bad bodies get a clear 4xx and create nothing", () =>
    Effect.gen(function* () {
      const alice = yield* makeUser("Alice")
      const cases = [
        { raw: "{not json", headers: { "content-type": "application/json" }, code: "invalid_json" },
        { raw: '{"name":"x"}', headers: { "content-type": "text/plain" }, code: "unsupported_media_type" },
        { body: { name: "", repoUrl: "x" }, code: "invalid_body" },
        { body: { name: "x", repoUrl: "x", defaultBranch: "a b" }, code: "invalid_body" },
        { body: [1, 2], code: "invalid_body" }
      ]
      for (const c of cases) {
        const r = yield* http("POST", "/api/v1/projects", { token: alice.token, ...c })
        expect(r.status, JSON.stringify(c)).toBeGreaterThanOrEqual(400)
        expect(r.status).toBeLessThan(500)
        expect(r.body.code).toBe(c.code)
      }
      expect((yield* http("GET", "/api/v1/projects", { token: alice.token })).body.projects).toEqual([])
      const openapi = yield* http("GET", "/api/v1/openapi.json")
      expect(openapi.status).toBe(200)
      expect(Object.keys(openapi.body.paths)).toContain("/api/v1/projects/{projectId}")
    })
  )
})
