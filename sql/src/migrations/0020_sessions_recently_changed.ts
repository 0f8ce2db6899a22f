import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Sessions by when they last changed, and the active ones: the snapshot check (SessionSnapshotCheck.ts)
 * asks for both every `SAM_RECONCILE_INTERVAL_MS`. Without them it reads the whole `sessions` table, which
 * only grows.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE INDEX sessions_updated ON sessions (updated_at)`
  yield* sql`CREATE INDEX sessions_active ON sessions (id) WHERE status = 'active'`
})
