import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * GitHub App installations (issue 15). `github_installation_accounts` is the canonical record of an
 * installation, keyed by GitHub's installation id: written by webhooks and by syncs, tombstoned
 * (`uninstalled_at`) only when GitHub says the app was uninstalled, never by a user's unlink.
 * `github_installation_links` says which SAM user may use which installation; a row there is only ever
 * written after GitHub has confirmed that user's access. `github_webhook_deliveries` de-duplicates
 * webhook deliveries by GitHub's delivery id. `github_user_tokens` keeps a user's GitHub token, sealed
 * (`SecretBox`), for the calls that must be made as that user (shared-organisation discovery).
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE github_installation_accounts (
      installation_id bigint PRIMARY KEY CHECK (installation_id > 0),
      account_type text NOT NULL CHECK (account_type IN ('organization', 'personal')),
      account_id bigint,
      account_name text NOT NULL CHECK (length(account_name) > 0),
      normalized_account_name text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      uninstalled_at timestamptz
    )`
  yield* sql`
    CREATE INDEX github_installation_accounts_live ON github_installation_accounts
      (account_type, normalized_account_name) WHERE uninstalled_at IS NULL`
  yield* sql`
    CREATE TABLE github_installation_links (
      user_id text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      installation_id bigint NOT NULL REFERENCES github_installation_accounts(installation_id),
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (user_id, installation_id)
    )`
  yield* sql`CREATE INDEX github_installation_links_installation ON github_installation_links (installation_id)`
  yield* sql`
    CREATE TABLE github_webhook_deliveries (
      delivery_id text PRIMARY KEY CHECK (length(delivery_id) BETWEEN 1 AND 200),
      event text NOT NULL,
      received_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`
    CREATE TABLE github_user_tokens (
      user_id text PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
      sealed text NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now()
    )`
})
