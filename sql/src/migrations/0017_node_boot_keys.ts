import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The safer bootstrap exchange and the live boot log (ADR 0027). `node_boot_tokens.public_key`: the NATS
 * user public key the node sent with the exchange that used the token (it made the key pair and keeps the
 * seed); a repeat of that token for that node and that key within minutes signs again, any other key is
 * refused. `node_boot_log.seq`: the line's number in the machine's boot log, so a line sent live and again
 * with the exchange is stored once; `received_at`: when the control plane got it.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    ALTER TABLE node_boot_tokens ADD COLUMN public_key text CHECK (public_key ~ '^U[A-Z2-7]{55}$')`
  yield* sql`ALTER TABLE node_boot_log ADD COLUMN seq integer CHECK (seq > 0)`
  yield* sql`ALTER TABLE node_boot_log ADD COLUMN received_at timestamptz NOT NULL DEFAULT now()`
  yield* sql`CREATE UNIQUE INDEX node_boot_log_seq ON node_boot_log (node_id, seq) WHERE seq IS NOT NULL`
})
