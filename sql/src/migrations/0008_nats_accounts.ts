import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The NATS accounts of outside parties (ADR 0016): one per node and one per API token that minted
 * programmatic credentials. Only the public key is kept (the operator signs the account JWT, a
 * shared key its users); `revoked_at` is when every user of the account was revoked at the server,
 * after which the party gets no credential and no renewal again.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE nats_accounts (
      public_key text PRIMARY KEY CHECK (public_key ~ '^A[A-Z2-7]{55}$'),
      kind text NOT NULL CHECK (kind IN ('node', 'client')),
      owner_ref text NOT NULL,
      user_id text,
      created_at timestamptz NOT NULL DEFAULT now(),
      revoked_at timestamptz
    )`
  yield* sql`CREATE UNIQUE INDEX nats_accounts_one_live ON nats_accounts (kind, owner_ref) WHERE revoked_at IS NULL`
  yield* sql`CREATE INDEX nats_accounts_owner ON nats_accounts (kind, owner_ref, created_at)`
})
