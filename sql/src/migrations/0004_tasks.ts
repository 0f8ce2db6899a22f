import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/** What the task, node and workspace actors need beyond the first ledger tables. */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE tasks ADD COLUMN step_attempt integer NOT NULL DEFAULT 0`
  yield* sql`ALTER TABLE tasks ADD COLUMN commit_sha text`
  yield* sql`ALTER TABLE tasks ADD COLUMN finished_at timestamptz`
  yield* sql`ALTER TABLE nodes ADD COLUMN max_workspaces integer NOT NULL DEFAULT 4 CHECK (max_workspaces > 0)`
  yield* sql`ALTER TABLE workspaces ADD COLUMN repo_url text`
  yield* sql`ALTER TABLE workspaces ADD COLUMN branch text`
  yield* sql`ALTER TABLE workspaces ADD COLUMN dispatch_count integer NOT NULL DEFAULT 0`
  yield* sql`CREATE INDEX workspaces_pending_dispatch ON workspaces (node_id) WHERE dispatched_at IS NULL`
})
