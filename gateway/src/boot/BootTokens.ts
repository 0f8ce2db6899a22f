import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { Api, makeId } from "@sam/bus"
import { Effect, Redacted } from "effect"

/** How long a bootstrap token lives (`SAM_BOOT_TOKEN_TTL_SECONDS`, default 15 minutes; 60 s to 2 h). */
export const tokenTtlSeconds = (env: NodeJS.ProcessEnv = process.env) => {
  const value = Number(env.SAM_BOOT_TOKEN_TTL_SECONDS ?? 900)
  return Number.isFinite(value) ? Math.min(7200, Math.max(60, Math.floor(value))) : 900
}

export const hashToken = (token: string) => createHash("sha256").update(token, "utf8").digest()

export interface Issued {
  readonly nodeId: string
  readonly token: Redacted.Redacted<string>
  readonly expiresAt: Date
}

/**
 * A fresh bootstrap token bound to `nodeId` and its owner: 256 random bits, stored as their SHA-256
 * only, usable once until `expiresAt`. The value exists only in what is returned (user data, a join
 * command); it is never logged.
 */
export const issue = Effect.fn("BootTokens.issue")(function* (input: {
  readonly nodeId: string
  readonly ownerId: string
  readonly purpose: "cloud" | "join"
  readonly provider: string
  readonly ttlSeconds?: number
}) {
  const sql = yield* SqlClient.SqlClient
  const token = `${Api.BOOT_TOKEN_PREFIX}${randomBytes(32).toString("base64url")}`
  const expiresAt = new Date(Date.now() + (input.ttlSeconds ?? tokenTtlSeconds()) * 1000)
  yield* sql`
    INSERT INTO node_boot_tokens (token_hash, node_id, owner_id, purpose, provider, expires_at)
    VALUES (${hashToken(token)}, ${input.nodeId}, ${input.ownerId}, ${input.purpose}, ${input.provider}, ${expiresAt})`
  return { nodeId: input.nodeId, token: Redacted.make(token), expiresAt } satisfies Issued
})

/** A join token for a machine of `ownerId`'s: the node id is chosen now, its row is made at the exchange. */
export const issueJoin = (ownerId: string, ttlSeconds?: number) =>
  issue({
    nodeId: makeId("node"),
    ownerId,
    purpose: "join",
    provider: "joined",
    ...(ttlSeconds === undefined ? {} : { ttlSeconds })
  })

/**
 * The node caps (ADR 0022: `SAM_MAX_NODES_PER_USER`, `SAM_MAX_NODES`), read as the node actor reads them. A join
 * token holds a place under them from its issue: a user's live nodes and unused, unexpired join tokens together
 * stay within the cap, and the node actor counts those tokens when it creates a node.
 */
const nodeCaps = () => ({
  perUser: Number(process.env.SAM_MAX_NODES_PER_USER ?? 3),
  total: Number(process.env.SAM_MAX_NODES ?? 10)
})

/** A join token for `ownerId` while the caps allow, counted under the node actor's fleet lock; else why not. */
export const issueJoinWithinCaps = (ownerId: string, ttlSeconds?: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.withTransaction(
      Effect.gen(function* () {
        yield* sql`SELECT pg_advisory_xact_lock(hashtext('sam.node-fleet'))`
        const [count] = yield* sql<{ own: number; all: number }>`
          SELECT count(*) FILTER (WHERE owner_id = ${ownerId})::int AS own, count(*)::int AS all FROM (
            SELECT owner_id FROM nodes WHERE status IN ('provisioning', 'running', 'warm')
            UNION ALL
            SELECT owner_id FROM node_boot_tokens WHERE purpose = 'join' AND used_at IS NULL AND expires_at > now()
          ) counted`
        const caps = nodeCaps()
        const own = count?.own ?? 0
        if (own >= caps.perUser)
          return {
            refused:
              `your node cap is reached: ${own} nodes and unused join tokens, at most ${caps.perUser} ` +
              "(SAM_MAX_NODES_PER_USER); delete a node or let an unused join token expire"
          }
        if ((count?.all ?? 0) >= caps.total)
          return { refused: `the installation's node cap is reached (${caps.total} nodes, SAM_MAX_NODES)` }
        return { issued: yield* issueJoin(ownerId, ttlSeconds) }
      })
    )
  )

export interface Redeemable {
  readonly nodeId: string
  readonly ownerId: string
  readonly purpose: "cloud" | "join"
  readonly provider: string
  /** the token was used by an exchange for this node and this public key within the repeat window */
  readonly repeat: boolean
}

export type Refusal = "unknown" | "used" | "other-key" | "expired" | "other-node" | "node-gone"

const live = (status: string | null) => status === "provisioning" || status === "running" || status === "warm"

/**
 * Locks the token's row for this transaction and says whether it may be used now. The row is found by
 * the SHA-256 of what was sent (an index lookup that leaks nothing useful about a stored value), then
 * the stored hash is compared in constant time. With `publicKey` (an exchange), a used token passes again
 * only for the node and key of the exchange that used it, within `BOOT_REPEAT_SECONDS` of that use; without
 * it (a boot-log line), a used token never passes.
 */
export const lock = Effect.fn("BootTokens.lock")(function* (
  token: string,
  nodeId: string | undefined,
  publicKey?: string
) {
  const sql = yield* SqlClient.SqlClient
  const hash = hashToken(token)
  const rows = yield* sql<{
    tokenHash: Uint8Array
    nodeId: string
    ownerId: string
    purpose: "cloud" | "join"
    provider: string
    expired: boolean
    usedAt: Date | null
    usedRecently: boolean
    publicKey: string | null
    nodeStatus: string | null
  }>`
    SELECT t.token_hash, t.node_id, t.owner_id, t.purpose, t.provider, t.expires_at <= now() AS expired, t.used_at,
      t.used_at > now() - make_interval(secs => ${Api.BOOT_REPEAT_SECONDS}) AS used_recently, t.public_key,
      n.status AS node_status
    FROM node_boot_tokens t LEFT JOIN nodes n ON n.id = t.node_id
    WHERE t.token_hash = ${hash} FOR UPDATE OF t`
  const row = rows[0]
  if (row === undefined || !timingSafeEqual(Buffer.from(row.tokenHash), hash)) return { refused: "unknown" as Refusal }
  if (nodeId !== undefined && nodeId !== row.nodeId) return { refused: "other-node" as Refusal }
  const found = { nodeId: row.nodeId, ownerId: row.ownerId, purpose: row.purpose, provider: row.provider }
  if (row.usedAt !== null) {
    // The first answer may have been lost: the same key may ask again for a while. Its JWT is useless to
    // anyone without that key's seed, which never left the node.
    if (publicKey === undefined || !row.usedRecently) return { refused: "used" as Refusal }
    if (row.publicKey === null || row.publicKey !== publicKey) return { refused: "other-key" as Refusal }
    if (!live(row.nodeStatus)) return { refused: "node-gone" as Refusal }
    return { token: { ...found, repeat: true } as Redeemable }
  }
  if (row.expired) return { refused: "expired" as Refusal }
  if (row.purpose === "cloud" ? !live(row.nodeStatus) : row.nodeStatus !== null)
    return { refused: "node-gone" as Refusal }
  return { token: { ...found, repeat: false } as Redeemable }
})

/** Marks the token used by the exchange for `publicKey` (in the exchange's transaction, after its checks). */
export const markUsed = (token: string, from: string | undefined, publicKey: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql`UPDATE node_boot_tokens SET used_at = now(), used_from = ${from ?? null}, public_key = ${publicKey}
      WHERE token_hash = ${hashToken(token)} AND used_at IS NULL`
  )
