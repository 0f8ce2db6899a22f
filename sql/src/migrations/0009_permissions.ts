import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Permission requests a person can answer (ADR 0018): each project's policy (`ask` a member, who has
 * `permission_timeout_seconds` before the request is refused; `allow` or `deny` at once), and each
 * session's requests waiting for an answer, kept by the session actor.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    ALTER TABLE projects
      ADD COLUMN permission_policy text NOT NULL DEFAULT 'ask' CHECK (permission_policy IN ('ask', 'allow', 'deny')),
      ADD COLUMN permission_timeout_seconds integer NOT NULL DEFAULT 600
        CHECK (permission_timeout_seconds BETWEEN 1 AND 86400)`
  yield* sql`ALTER TABLE sessions ADD COLUMN pending_permissions jsonb NOT NULL DEFAULT '[]'`
})
