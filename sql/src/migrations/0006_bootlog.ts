import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * A workspace's boot log as its node reported it (clone, setup, agent install…), one row a line in
 * the order the workspace actor received them; written in that actor's transaction, so a
 * redelivered report adds no line twice.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE workspace_boot_log (
      id bigserial PRIMARY KEY,
      workspace_id text NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
      step text NOT NULL,
      status text NOT NULL CHECK (status IN ('started', 'completed', 'failed', 'info')),
      message text NOT NULL,
      at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`CREATE INDEX workspace_boot_log_workspace ON workspace_boot_log (workspace_id, id)`
})
