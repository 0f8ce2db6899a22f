import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * What the gateway needs (design §9): sign-in for people (a password for the local owner, GitHub for
 * deployments), browser sessions and API tokens for programs, both stored only as SHA-256 hashes of
 * high-entropy random tokens (a leaked table row cannot be replayed), and the notifications users
 * receive. A notification is unique per (source event, type), so a redelivered event adds none.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    ALTER TABLE users
      ADD COLUMN login text UNIQUE CHECK (login ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
      ADD COLUMN password_hash text,
      ADD COLUMN github_id bigint UNIQUE`
  yield* sql`
    CREATE TABLE user_sessions (
      id text PRIMARY KEY CHECK (id ~ '^uses_[0-9a-z]+$'),
      user_id text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      token_hash text NOT NULL UNIQUE,
      created_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz NOT NULL,
      revoked_at timestamptz
    )`
  yield* sql`
    CREATE TABLE api_tokens (
      id text PRIMARY KEY CHECK (id ~ '^tok_[0-9a-z]+$'),
      user_id text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
      token_hash text NOT NULL UNIQUE,
      created_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz,
      last_used_at timestamptz,
      revoked_at timestamptz
    )`
  yield* sql`CREATE INDEX api_tokens_user ON api_tokens (user_id, created_at)`
  yield* sql`
    CREATE TABLE notifications (
      id text PRIMARY KEY CHECK (id ~ '^ntf_[0-9a-z]+$'),
      user_id text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      project_id text NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
      task_id text,
      session_id text,
      type text NOT NULL
        CHECK (type IN ('needs_input', 'task_complete', 'error', 'progress', 'session_ended', 'pr_created')),
      priority boolean NOT NULL,
      title text NOT NULL,
      body text,
      source_event_id text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      read_at timestamptz,
      UNIQUE (source_event_id, type, user_id)
    )`
  yield* sql`CREATE INDEX notifications_user ON notifications (user_id, created_at DESC)`
  yield* sql`CREATE INDEX notifications_unread ON notifications (user_id) WHERE read_at IS NULL`
})
