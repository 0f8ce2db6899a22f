import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * A node's capacity is its own (ADR 0022): one row per slot the node actor reserved for a workspace,
 * deleted when the workspace's task ends or the workspace stops, is deleted or fails. Filled with the
 * workspaces that hold a slot now: live, and the current workspace of a task that has not ended.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE node_reservations (
      workspace_id text PRIMARY KEY,
      node_id text NOT NULL REFERENCES nodes(id),
      task_id text REFERENCES tasks(id),
      created_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`CREATE INDEX node_reservations_node ON node_reservations (node_id)`
  yield* sql`
    INSERT INTO node_reservations (workspace_id, node_id, task_id)
    SELECT w.id, w.node_id, w.task_id FROM workspaces w LEFT JOIN tasks t ON t.id = w.task_id
    WHERE w.node_id IS NOT NULL AND w.status IN ('pending', 'creating', 'running', 'recovery')
      AND (w.task_id IS NULL OR (t.workspace_id = w.id AND t.status NOT IN ('completed', 'failed', 'cancelled')))`
})
