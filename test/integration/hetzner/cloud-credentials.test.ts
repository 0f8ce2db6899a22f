import { randomBytes } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { makeId } from "@sam/bus"
import { Gateway } from "@sam/gateway"
import { Hetzner } from "@sam/infra"
import { Migrations, SecretBox } from "@sam/sql"
import { Effect, Layer } from "effect"
import { afterAll, beforeAll, expect } from "vitest"
import { freshDatabase, sqlLayer } from "../../src/Env.js"
import { startFakeHetzner } from "../../src/FakeHetzner.js"
import { GatewayUrl, http, makeUser } from "../../src/GatewayHarness.js"
import { startPrivateNats } from "../../src/PrivateNats.js"

/** Hetzner tokens are 64 letters and digits. */
const GOOD = randomBytes(32).toString("hex")
const REVOKED = randomBytes(32).toString("hex")
let fake: Awaited<ReturnType<typeof startFakeHetzner>>
const savedKey = process.env.SAM_MASTER_KEY
beforeAll(async () => {
  fake = await startFakeHetzner({ tokens: [GOOD] })
  process.env.SAM_MASTER_KEY = randomBytes(32).toString("base64")
})
afterAll(async () => {
  if (savedKey === undefined) delete process.env.SAM_MASTER_KEY
  else process.env.SAM_MASTER_KEY = savedKey
  await fake?.close()
})

/** The gateway alone (no control plane: these routes need none), with the Hetzner token check on the fake. */
const Env = Layer.unwrapScoped(
  Effect.gen(function* () {
    const nats = yield* startPrivateNats
    const sql = sqlLayer(yield* Effect.promise(freshDatabase))
    yield* Migrations.migrate().pipe(Effect.provide(sql))
    const gateway = Layer.scoped(
      GatewayUrl,
      Gateway.start({ host: "127.0.0.1", port: 0, natsUrl: nats.url }).pipe(
        Effect.map((g) => g.url),
        Effect.provide(Hetzner.TokenCheck.layer({ apiUrl: fake.url }))
      )
    )
    return Layer.provideMerge(gateway, Layer.merge(nats.layer, sql))
  })
)

const sealedRows = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql<{ userId: string; sealed: string }>`
  SELECT user_id, sealed FROM cloud_credentials`
)

layer(Env, { excludeTestServices: true, timeout: 60_000 })("cloud credentials: a Hetzner token per user", (it) => {
  it.effect("a good token is checked with Hetzner, stored encrypted, and never returned", () =>
    Effect.gen(function* () {
      const alice = yield* makeUser("Alice")
      const bob = yield* makeUser("Bob")
      const none = yield* http("GET", "/api/v1/cloud-credentials", { token: alice.token })
      expect(none.body).toEqual({
        credentials: [{ provider: "hetzner", configured: false, validatedAt: null, updatedAt: null }]
      })
      const checksBefore = fake.requests.filter((r) => r.path === "/server_types").length
      const set = yield* http("PUT", "/api/v1/cloud-credentials/hetzner", {
        token: alice.token,
        body: { token: `  ${GOOD}\n` }
      })
      expect(set.status).toBe(200)
      expect(set.body).toMatchObject({ provider: "hetzner", configured: true })
      expect(fake.requests.filter((r) => r.path === "/server_types").length).toBe(checksBefore + 1)
      // At rest: sealed, the token nowhere in the row.
      const rows = yield* sealedRows
      expect(rows).toHaveLength(1)
      expect(rows[0]!.userId).toBe(alice.userId)
      expect(rows[0]!.sealed).toMatch(/^v1\./)
      expect(JSON.stringify(rows)).not.toContain(GOOD)
      // Never in an answer: hers says configured, Bob's says not.
      const mine = yield* http("GET", "/api/v1/cloud-credentials", { token: alice.token })
      expect(mine.body.credentials[0].configured).toBe(true)
      expect(JSON.stringify(mine.body)).not.toContain(GOOD)
      const bobs = yield* http("GET", "/api/v1/cloud-credentials", { token: bob.token })
      expect(bobs.body.credentials[0].configured).toBe(false)
      // Only the master key opens it, to the token as given (trimmed).
      expect(yield* SecretBox.open(rows[0]!.sealed)).toBe(GOOD)
      // Removed: gone from the ledger; removing again is a 404.
      const removed = yield* http("DELETE", "/api/v1/cloud-credentials/hetzner", { token: alice.token })
      expect(removed.body).toMatchObject({ configured: false })
      expect(yield* sealedRows).toEqual([])
      expect((yield* http("DELETE", "/api/v1/cloud-credentials/hetzner", { token: alice.token })).status).toBe(404)
    })
  )

  it.effect(
    "a token Hetzner refuses (401) is a clear 400 and nothing is stored; malformed tokens never reach Hetzner",
    () =>
      Effect.gen(function* () {
        const carol = yield* makeUser("Carol")
        const refused = yield* http("PUT", "/api/v1/cloud-credentials/hetzner", {
          token: carol.token,
          body: { token: REVOKED }
        })
        expect(refused.status).toBe(400)
        expect(refused.body.code).toBe("invalid_body")
        expect(refused.body.message).toContain("Hetzner refused this token")
        expect(JSON.stringify(refused.body)).not.toContain(REVOKED)
        const checks = fake.requests.length
        for (const body of [
          { token: "short" },
          { token: `${GOOD} ${GOOD}` },
          { token: 42 },
          {},
          { token: "x".repeat(500) }
        ]) {
          const r = yield* http("PUT", "/api/v1/cloud-credentials/hetzner", { token: carol.token, body })
          expect(r.status, JSON.stringify(body)).toBe(400)
          expect(r.body.code).toBe("invalid_body")
        }
        expect(fake.requests.length).toBe(checks)
        expect((yield* sealedRows).filter((r) => r.userId === carol.userId)).toEqual([])
        // Without signing in: 401.
        expect((yield* http("GET", "/api/v1/cloud-credentials")).status).toBe(401)
      })
  )

  it.effect(
    "an agent profile asks for a Hetzner node by provider, size and location; other values are a clear 400",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const dave = yield* makeUser("Dave")
        const projectId = makeId("proj")
        yield* sql`INSERT INTO projects (id, owner_id, name, repo_url) VALUES (${projectId}, ${dave.userId}, 'p', '/tmp/p')`
        yield* sql`INSERT INTO project_members (project_id, user_id, role) VALUES (${projectId}, ${dave.userId}, 'owner')`
        const path = `/api/v1/projects/${projectId}/agent-profiles`
        const created = yield* http("POST", path, {
          token: dave.token,
          body: { name: "cloud", agent: "demo", nodeProvider: "hetzner", vmSize: "large", vmLocation: "hel1" }
        })
        expect(created.status).toBe(201)
        expect(created.body).toMatchObject({ nodeProvider: "hetzner", vmSize: "large", vmLocation: "hel1" })
        const plain = yield* http("POST", path, { token: dave.token, body: { name: "here", agent: "demo" } })
        expect(plain.body).toMatchObject({ nodeProvider: null, vmSize: null, vmLocation: null })
        for (const body of [
          { name: "x1", agent: "demo", nodeProvider: "aws" },
          { name: "x2", agent: "demo", nodeProvider: "hetzner", vmSize: "huge" },
          { name: "x3", agent: "demo", nodeProvider: "hetzner", vmLocation: "mars" }
        ]) {
          const r = yield* http("POST", path, { token: dave.token, body })
          expect(r.status, JSON.stringify(body)).toBe(400)
          expect(r.body.code).toBe("invalid_body")
        }
        const patched = yield* http("PATCH", `${path}/${created.body.id}`, {
          token: dave.token,
          body: { vmSize: null, vmLocation: "fsn1" }
        })
        expect(patched.body).toMatchObject({ nodeProvider: "hetzner", vmSize: null, vmLocation: "fsn1" })
        const [row] = yield* sql<{
          n: number
        }>`SELECT count(*)::int AS n FROM agent_profiles WHERE project_id = ${projectId}`
        expect(row?.n).toBe(2)
      })
  )
})
