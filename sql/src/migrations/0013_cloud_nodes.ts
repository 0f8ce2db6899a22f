import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Nodes in the user's own cloud (issue 14, ADR 0026). `sam_installation` holds this installation's id,
 * random, for the labels of its servers (the reconciler lists only its own). `cloud_credentials` keeps a
 * user's cloud API token, sealed (`SecretBox`). An agent profile may ask for a node of a provider, size
 * and location. `node_machines` is what a cloud node was asked for and which server it got;
 * `provider_requests` records every create and delete before it is sent and its answer after, so a
 * request whose answer was lost is looked up (by its labels) rather than sent again.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE sam_installation (
      singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
      id text NOT NULL CHECK (id ~ '^[0-9a-f]{32}$')
    )`
  yield* sql`INSERT INTO sam_installation (id) VALUES (md5(random()::text || clock_timestamp()::text))`
  yield* sql`
    CREATE TABLE cloud_credentials (
      user_id text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      provider text NOT NULL CHECK (provider IN ('hetzner')),
      sealed text NOT NULL,
      validated_at timestamptz NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (user_id, provider)
    )`
  yield* sql`
    ALTER TABLE agent_profiles
      ADD COLUMN node_provider text CHECK (node_provider IN ('local', 'hetzner')),
      ADD COLUMN vm_size text CHECK (vm_size IN ('small', 'medium', 'large')),
      ADD COLUMN vm_location text CHECK (vm_location IN ('fsn1', 'nbg1', 'hel1', 'ash', 'hil'))`
  yield* sql`
    CREATE TABLE node_machines (
      node_id text PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
      provider text NOT NULL CHECK (provider IN ('hetzner')),
      size text NOT NULL CHECK (size IN ('small', 'medium', 'large')),
      size_explicit boolean NOT NULL,
      location text NOT NULL,
      image text NOT NULL,
      server_id bigint,
      server_type text,
      server_location text,
      ipv4 text,
      error text,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`
    CREATE TABLE provider_requests (
      id bigserial PRIMARY KEY,
      node_id text NOT NULL,
      provider text NOT NULL CHECK (provider IN ('hetzner')),
      kind text NOT NULL CHECK (kind IN ('create', 'delete')),
      idempotency_key text NOT NULL UNIQUE,
      server_type text,
      location text,
      status text NOT NULL DEFAULT 'sent' CHECK (status IN ('sent', 'succeeded', 'failed', 'unknown')),
      server_id bigint,
      action_id bigint,
      error_code text,
      error_message text,
      sent_at timestamptz NOT NULL DEFAULT now(),
      answered_at timestamptz
    )`
  yield* sql`CREATE INDEX provider_requests_node ON provider_requests (node_id, id)`
})
