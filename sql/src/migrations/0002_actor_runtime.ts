import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The actor runtime's tables (design §5). The inbox makes a redelivered command a no-op; the outbox
 * carries what a handler sends, published after commit; timers are durable commands for later;
 * dead letters keep what could not be handled; shard fences refuse commits from a stale owner.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE actor_inbox (
      message_id text PRIMARY KEY,
      kind text NOT NULL,
      entity_id text NOT NULL,
      processed_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`
    CREATE TABLE actor_outbox (
      seq bigserial PRIMARY KEY,
      message_id text NOT NULL UNIQUE,
      subject text NOT NULL,
      payload text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      sent_at timestamptz
    )`
  yield* sql`CREATE INDEX actor_outbox_unsent ON actor_outbox (seq) WHERE sent_at IS NULL`
  yield* sql`
    CREATE TABLE actor_timers (
      kind text NOT NULL,
      entity_id text NOT NULL,
      name text NOT NULL,
      due_at timestamptz NOT NULL,
      message_id text NOT NULL,
      subject text NOT NULL,
      payload text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (kind, entity_id, name)
    )`
  yield* sql`CREATE INDEX actor_timers_due ON actor_timers (due_at)`
  yield* sql`
    CREATE TABLE actor_dead_letters (
      id bigserial PRIMARY KEY,
      kind text NOT NULL,
      entity_id text,
      message_id text,
      subject text NOT NULL,
      stream_seq bigint,
      reason text NOT NULL,
      detail text NOT NULL DEFAULT '',
      payload text NOT NULL,
      at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`CREATE INDEX actor_dead_letters_entity ON actor_dead_letters (kind, entity_id)`
  yield* sql`
    CREATE TABLE actor_shard_fences (
      kind text NOT NULL,
      shard integer NOT NULL CHECK (shard >= 0),
      epoch bigint NOT NULL CHECK (epoch >= 0),
      owner text NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (kind, shard)
    )`
})
