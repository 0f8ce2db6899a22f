import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * A session's token usage, as the API shows it with every session (gateway/src/services/SessionViews.ts): the
 * sum over its `turn-ended` entries that carry usage, and its last `usage_update`. Found through the transcript's
 * key alone, each session's whole transcript was read twice: listing a project's chats took time in proportion to
 * every event of every chat listed (28.8 ms for 40 chats of 2,500 events; 2.9 ms with these). Partial: only those
 * few entries are indexed, so writing the transcript costs next to nothing more.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE INDEX session_events_turn_usage ON session_events (session_id)
    WHERE type = 'turn-ended' AND jsonb_typeof(payload->'usage') = 'object'`
  yield* sql`
    CREATE INDEX session_events_usage_updates ON session_events (session_id, seq)
    WHERE type = 'update' AND payload->'update'->>'sessionUpdate' = 'usage_update'`
})
