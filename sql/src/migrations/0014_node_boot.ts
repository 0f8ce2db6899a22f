import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The boot path of remote nodes (ADR 0027). `node_boot_tokens`: short-lived, single-use bootstrap
 * tokens, stored as their SHA-256 only, each bound to one node id and its owner; a cloud node's token
 * is issued into its user data, a joining machine's by its owner (`purpose = 'join'`, whose node row
 * is created at the exchange). `used_at` is set by the one exchange that may use it. `node_boot_log`:
 * a node's boot progress (cloud-init stages, boot-script steps) as its vm-agent reported it. A node
 * that joined on its owner's own machine has the provider `joined`.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE node_boot_tokens (
      token_hash bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
      node_id text NOT NULL CHECK (node_id ~ '^node_[0-9a-z]+$'),
      owner_id text NOT NULL REFERENCES users(id),
      purpose text NOT NULL CHECK (purpose IN ('cloud', 'join')),
      provider text NOT NULL,
      expires_at timestamptz NOT NULL,
      used_at timestamptz,
      used_from text,
      created_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`CREATE INDEX node_boot_tokens_node ON node_boot_tokens (node_id)`
  yield* sql`
    CREATE TABLE node_boot_log (
      id bigserial PRIMARY KEY,
      node_id text NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
      at timestamptz NOT NULL,
      step text NOT NULL,
      status text NOT NULL CHECK (status IN ('started', 'completed', 'failed', 'info')),
      message text NOT NULL
    )`
  yield* sql`CREATE INDEX node_boot_log_node ON node_boot_log (node_id, id)`
  yield* sql`ALTER TABLE nodes DROP CONSTRAINT IF EXISTS nodes_provider_check`
  yield* sql`ALTER TABLE nodes ADD CONSTRAINT nodes_provider_check CHECK (provider IN ('local', 'hetzner', 'joined'))`
})
