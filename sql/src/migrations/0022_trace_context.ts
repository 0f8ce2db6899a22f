import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * W3C trace context kept where a message waits (issue 12: one message, followed). An outbox row keeps that of the
 * handler that wrote it: whoever publishes the row, the commit itself or the relay later, sends it as the message's
 * `traceparent` header, so the receiving actor's or node's span continues the same trace. A node reservation keeps
 * that of the request it was made for, as it keeps its correlation id: a task that waited for its node is handed
 * over in its own trace, not the node's readiness's.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE actor_outbox ADD COLUMN traceparent text`
  yield* sql`ALTER TABLE node_reservations ADD COLUMN traceparent text`
})
