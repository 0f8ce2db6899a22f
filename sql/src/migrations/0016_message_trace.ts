import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * One message followed from end to end (issue 12): each applied command's type and correlation id are
 * kept with its inbox row (whose `processed_at` says when it was applied), so `sam trace <taskId>`
 * shows the hops a request caused and when each happened; a transcript entry keeps the correlation id
 * of the report that brought it, so caught-up feed frames carry it as live ones do; a node reservation
 * keeps the request it was made for, so what the node's readiness hands over (a task that waited for
 * the node) follows that request. Rows from before have none.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE actor_inbox ADD COLUMN type text, ADD COLUMN correlation_id text`
  yield* sql`CREATE INDEX actor_inbox_correlation ON actor_inbox (correlation_id) WHERE correlation_id IS NOT NULL`
  yield* sql`ALTER TABLE session_events ADD COLUMN correlation_id text`
  yield* sql`ALTER TABLE node_reservations ADD COLUMN correlation_id text`
})
