import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { makeId } from "@sam/bus"
import { Effect, type Redacted } from "effect"
import { beforeAll } from "vitest"
import { Reconciled, reconcile } from "../../../actors/src/domain/Reconciler.js"
import { sqlLayer } from "../../src/Env.js"
import { placement, sessionDatabase } from "../../src/SessionHarness.js"

let url: Redacted.Redacted<string>
beforeAll(async () => {
  url = await sessionDatabase()
})

/** What the reconciler marks `error` as missing from a node's inventory that holds nothing. */
const markedMissing = (nodeId: string, at: Date) =>
  Effect.gen(function* () {
    const empty = { workspaces: [], agentSessions: [] }
    const ledger = yield* Reconciled.load(nodeId, empty, at.toISOString())
    return reconcile(nodeId, empty, ledger)
      .send.filter((s) => s.envelope.type === "workspace.missing")
      .map((s) => (s.envelope.body as { workspaceId: string }).workspaceId)
  })

describe("the reconciler and a heartbeat handled late (ADR 0023)", () => {
  it.effect("counts a workspace as settled from when its inventory was received, not from when it is handled", () =>
    Effect.gen(function* () {
      process.env.SAM_RECONCILE_SETTLE_MS = "1000"
      const sql = yield* SqlClient.SqlClient
      const { place } = yield* placement
      const { nodeId, workspaceId: old } = yield* place()
      const fresh = makeId("ws")
      const { projectId } = (yield* sql<{ projectId: string }>`SELECT project_id FROM workspaces WHERE id = ${old}`)[0]!
      // `old` runs on the node since an hour ago; `fresh` started 3 s ago.
      yield* sql`UPDATE workspaces SET dispatched_at = now(), updated_at = now() - interval '1 hour' WHERE id = ${old}`
      yield* sql`
        INSERT INTO workspaces (id, project_id, node_id, status, dispatched_at, updated_at)
        VALUES (${fresh}, ${projectId}, ${nodeId}, 'running', now(), now() - interval '3 seconds')`

      // An inventory received 10 s ago, handled only now (its shard was busy): it was taken before `fresh`
      // started, so not holding it says nothing about it. `old` it should have held.
      expect(yield* markedMissing(nodeId, new Date(Date.now() - 10_000))).toEqual([old])
      // One received now holds neither: both are missing.
      expect((yield* markedMissing(nodeId, new Date())).sort()).toEqual([old, fresh].sort())
    }).pipe(
      Effect.provide(sqlLayer(url)),
      Effect.ensuring(Effect.sync(() => delete process.env.SAM_RECONCILE_SETTLE_MS))
    )
  )
})
