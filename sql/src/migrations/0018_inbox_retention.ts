import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The actor runtime deletes inbox rows older than their retention (`SAM_INBOX_RETENTION_MS`, 8 days):
 * it finds them by `processed_at` through a BRIN index, which the table's time-ordered inserts keep
 * small and which costs each command's insert next to nothing (a b-tree would be one more index write
 * per command).
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE INDEX actor_inbox_processed ON actor_inbox USING brin (processed_at)`
})
