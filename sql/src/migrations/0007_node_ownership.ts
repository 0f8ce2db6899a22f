import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * A node belongs to one user (design §9): `nodes.owner_id` (in the ledger since 0001, unset until
 * now) is the user whose tasks it hosts. The task actor sets it when it asks for a node, places work
 * only on the submitter's nodes, and the report ingress accepts a node's reports only about its
 * owner's work. Existing nodes get the submitter of the first task placed there, else the owner of
 * the first project with a workspace there; a node that never hosted anything stays unowned: nothing
 * is placed on it again and its reports about work are refused.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    UPDATE nodes n SET owner_id = COALESCE(
      (SELECT t.created_by FROM tasks t WHERE t.node_id = n.id ORDER BY t.created_at, t.id LIMIT 1),
      (SELECT p.owner_id FROM workspaces w JOIN projects p ON p.id = w.project_id
       WHERE w.node_id = n.id ORDER BY w.created_at, w.id LIMIT 1))
    WHERE n.owner_id IS NULL`
  yield* sql`CREATE INDEX nodes_owner ON nodes (owner_id, status)`
})
