import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * A workspace's sessions, by status: the workspace actor loads them for every command, and placement asks
 * whether a finished task's workspace still has an active one (ADR 0035). Without it both read the whole
 * `sessions` table, which only grows.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE INDEX sessions_workspace ON sessions (workspace_id, status)`
})
