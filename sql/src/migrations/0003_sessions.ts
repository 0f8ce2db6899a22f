import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * What the session actor keeps (design §5–§7): where the session runs (`node_id`, the ledger fact
 * callback scoping checks), its prompt epoch and mode, when it ended, and when the node last showed
 * signs of life for it (the healer's evidence). `dropped_reports` audits every node report that was
 * refused: a forged body, or a session or workspace the ledger does not place on the reporting node.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    ALTER TABLE sessions
      ADD COLUMN node_id text REFERENCES nodes(id),
      ADD COLUMN prompt_epoch integer NOT NULL DEFAULT 0 CHECK (prompt_epoch >= 0),
      ADD COLUMN mode text NOT NULL DEFAULT 'conversation' CHECK (mode IN ('task', 'conversation')),
      ADD COLUMN running_reported_at timestamptz,
      ADD COLUMN last_evidence_at timestamptz,
      ADD COLUMN ended_at timestamptz`
  yield* sql`CREATE INDEX sessions_node ON sessions (node_id) WHERE node_id IS NOT NULL`
  yield* sql`
    ALTER TABLE session_events
      ADD COLUMN node_seq bigint,
      ADD COLUMN prompt_epoch integer,
      ADD COLUMN report_id text`
  yield* sql`
    CREATE TABLE dropped_reports (
      id bigserial PRIMARY KEY,
      node_id text NOT NULL,
      subject text,
      type text NOT NULL,
      entity_id text,
      message_id text,
      reason text NOT NULL,
      payload text,
      at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`CREATE INDEX dropped_reports_node ON dropped_reports (node_id, at)`
})
