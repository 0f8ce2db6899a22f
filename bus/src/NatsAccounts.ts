import { SqlClient } from "@effect/sql"
import { Context, Effect, Layer, type Redacted } from "effect"
import * as Accounts from "./Accounts.js"
import type * as Credentials from "./Credentials.js"
import { NatsError } from "./Errors.js"
import { answerEach, Nats, natsLayer } from "./Nats.js"
import * as Subjects from "./Subjects.js"

/**
 * The outside parties' NATS accounts (ADR 0016): one per node, one per API token that minted
 * programmatic credentials. The ledger (`nats_accounts`) keeps each account's public key and when it
 * was revoked; the server gets each account JWT over the system account. Revoking is one JWT that
 * revokes every user of the account: the server closes their connections at once, and a revoked
 * account is never handed out or renewed again.
 */
export interface NatsAccountsOptions {
  readonly natsUrl: string
  /** a system-account user that may push account JWTs (Accounts.systemUserPermissions) */
  readonly systemCreds: Redacted.Redacted<string>
  readonly authority: Accounts.Authority
}

export class NatsAccounts extends Context.Tag("sam/NatsAccounts")<
  NatsAccounts,
  {
    /** a new user of the node's account (made on first use), valid `ttlSeconds`; fails once the node is revoked */
    readonly nodeCredentials: (nodeId: string, ttlSeconds: number) => Effect.Effect<Credentials.MintedUser, NatsError>
    /** a fresh JWT for the user key a node holds; fails once the node is revoked */
    readonly renewNode: (
      nodeId: string,
      userPublicKey: string,
      ttlSeconds: number
    ) => Effect.Effect<{ readonly jwt: string; readonly expiresAt: Date }, NatsError>
    /** revoke every user of the node's account now; returns how many accounts were revoked (0 or 1) */
    readonly revokeNode: (nodeId: string) => Effect.Effect<number, NatsError>
    /** a new user of the API token's account, valid `ttlSeconds` */
    readonly clientCredentials: (
      userId: string,
      tokenId: string,
      ttlSeconds: number
    ) => Effect.Effect<Credentials.MintedUser, NatsError>
    /** revoke every user of the token's account now */
    readonly revokeClient: (tokenId: string) => Effect.Effect<number, NatsError>
    /** revoke the accounts of every API token of a user (the user was removed) */
    readonly revokeClientsOf: (userId: string) => Effect.Effect<number, NatsError>
  }
>() {}

interface AccountRow {
  readonly publicKey: string
  readonly revokedAt: Date | null
}

const ownerRef = (party: Accounts.Party) => (party.kind === "node" ? party.nodeId : party.tokenId)

export const make = Effect.fn("NatsAccounts.make")(function* (options: NatsAccountsOptions) {
  const sql = yield* SqlClient.SqlClient
  const system = Context.get(
    yield* Layer.build(natsLayer({ servers: options.natsUrl, creds: options.systemCreds, name: "sam-accounts" })),
    Nats
  )
  const { authority } = options
  const db = <A>(effect: Effect.Effect<A, unknown>) =>
    effect.pipe(
      Effect.mapError((cause) => new NatsError({ reason: "Permission", message: `nats_accounts: ${cause}`, cause }))
    )

  /** The party's live account (created and pushed on first use). A revoked party gets none. */
  const ensure = (party: Accounts.Party) =>
    Effect.gen(function* () {
      const ref = ownerRef(party)
      const rows = yield* db(sql<AccountRow>`
        SELECT public_key, revoked_at FROM nats_accounts WHERE kind = ${party.kind} AND owner_ref = ${ref}
        ORDER BY created_at DESC LIMIT 1`)
      const found = rows[0]
      if (found?.revokedAt != null)
        return yield* new NatsError({ reason: "Permission", message: `${Accounts.partyName(party)} is revoked` })
      if (found !== undefined) return found.publicKey
      const publicKey = Accounts.newAccountKey()
      // The JWT reaches the server before the ledger names it, so a crash in between leaves an unused account.
      yield* Accounts.pushAccount(system.nc, yield* Accounts.accountJwt(authority, party, publicKey))
      yield* db(sql`
        INSERT INTO nats_accounts (public_key, kind, owner_ref, user_id)
        VALUES (${publicKey}, ${party.kind}, ${ref}, ${party.kind === "client" ? party.userId : null})
        ON CONFLICT DO NOTHING`)
      const winner = yield* db(sql<AccountRow>`
        SELECT public_key, revoked_at FROM nats_accounts WHERE kind = ${party.kind} AND owner_ref = ${ref}
        ORDER BY created_at ASC LIMIT 1`)
      return winner[0]?.publicKey ?? publicKey
    })

  interface LiveRow {
    readonly publicKey: string
    readonly ownerRef: string
    readonly userId: string | null
  }
  const live = (party: Accounts.Party) =>
    db(sql<LiveRow>`
      SELECT public_key, owner_ref, user_id FROM nats_accounts
      WHERE kind = ${party.kind} AND owner_ref = ${ownerRef(party)} AND revoked_at IS NULL`)

  const revoke = (party: Accounts.Party, found: Effect.Effect<ReadonlyArray<LiveRow>, NatsError> = live(party)) =>
    Effect.gen(function* () {
      const rows = yield* found
      const revokedBefore = Math.floor(Date.now() / 1000)
      for (const row of rows) {
        const actual: Accounts.Party =
          party.kind === "client"
            ? { kind: "client", userId: row.userId ?? party.userId, tokenId: row.ownerRef }
            : party
        yield* Accounts.pushAccount(
          system.nc,
          yield* Accounts.accountJwt(authority, actual, row.publicKey, { revokedBefore })
        )
        yield* db(sql`UPDATE nats_accounts SET revoked_at = now() WHERE public_key = ${row.publicKey}`)
      }
      if (rows.length > 0) yield* Effect.logInfo(`revoked NATS account of ${Accounts.partyName(party)}`)
      return rows.length
    })

  return NatsAccounts.of({
    nodeCredentials: (nodeId, ttlSeconds) =>
      Effect.gen(function* () {
        const party = { kind: "node", nodeId } as const
        const account = yield* ensure(party)
        return yield* Accounts.mintPartyUser(authority, party, account, ttlSeconds)
      }),
    renewNode: (nodeId, userPublicKey, ttlSeconds) =>
      Effect.gen(function* () {
        const party = { kind: "node", nodeId } as const
        const nodes = yield* db(sql<{ status: string }>`SELECT status FROM nodes WHERE id = ${nodeId}`)
        const status = nodes[0]?.status
        if (status === undefined || status === "destroying" || status === "deleted" || status === "error")
          return yield* new NatsError({ reason: "Permission", message: `node ${nodeId} is ${status ?? "unknown"}` })
        const account = yield* ensure(party)
        return yield* Accounts.renewPartyUser(authority, party, account, userPublicKey, ttlSeconds)
      }),
    revokeNode: (nodeId) => revoke({ kind: "node", nodeId }),
    clientCredentials: (userId, tokenId, ttlSeconds) =>
      Effect.gen(function* () {
        const party = { kind: "client", userId, tokenId } as const
        const account = yield* ensure(party)
        return yield* Accounts.mintPartyUser(authority, party, account, ttlSeconds)
      }),
    revokeClient: (tokenId) => revoke({ kind: "client", userId: "unknown", tokenId }),
    revokeClientsOf: (userId) =>
      revoke(
        { kind: "client", userId, tokenId: "all" },
        db(sql<LiveRow>`
          SELECT public_key, owner_ref, user_id FROM nats_accounts
          WHERE kind = 'client' AND user_id = ${userId} AND revoked_at IS NULL`)
      )
  })
})

export const layer = (options: NatsAccountsOptions) => Layer.scoped(NatsAccounts, make(options))

/** How long a node's JWT lives; it renews itself at half of it (`SAM_NODE_CREDS_TTL_SECONDS`). */
export const nodeCredsTtlSeconds = (env: NodeJS.ProcessEnv = process.env) => {
  const value = Number(env.SAM_NODE_CREDS_TTL_SECONDS ?? 6 * 3600)
  return Number.isFinite(value) && value >= 2 ? Math.floor(value) : 6 * 3600
}

/**
 * Answers `sam.agent.<nodeId>.creds` (a node renewing its JWT): the node id comes from the subject,
 * which only that node's account can publish on; the reply goes to the `_R_.` subject the server
 * made for the requester, and nowhere else.
 */
export const runNodeRenewals = Effect.fn("NatsAccounts.runNodeRenewals")(function* (ttlSeconds: number) {
  const { nc } = yield* Nats
  const accounts = yield* NatsAccounts
  const sub = nc.subscribe("sam.agent.*.creds", { queue: "sam-node-creds" })
  yield* Effect.addFinalizer(() => Effect.sync(() => sub.unsubscribe()))
  const answer = (subject: string, reply: string | undefined, data: Uint8Array) =>
    Effect.gen(function* () {
      if (reply === undefined || !reply.startsWith("_R_.")) {
        yield* Effect.logWarning(`node credential renewal on ${subject} without a server-made reply subject: dropped`)
        return
      }
      const nodeId = subject.split(".")[2] ?? ""
      const respond = (body: Accounts.NodeRenewReply) => Effect.sync(() => nc.publish(reply, JSON.stringify(body)))
      if (!Subjects.isToken(nodeId)) return yield* respond({ ok: false, error: "bad subject" })
      const request = Accounts.NodeRenewRequest.safeParse(
        yield* Effect.try(() => JSON.parse(new TextDecoder().decode(data))).pipe(Effect.orElseSucceed(() => undefined))
      )
      if (!request.success) return yield* respond({ ok: false, error: "expected {publicKey: U…}" })
      yield* accounts.renewNode(nodeId, request.data.publicKey, ttlSeconds).pipe(
        Effect.matchEffect({
          onFailure: (e) =>
            Effect.logWarning(`node ${nodeId} credential renewal refused: ${e.message}`).pipe(
              Effect.zipRight(respond({ ok: false, error: e.message }))
            ),
          onSuccess: (renewed) => respond({ ok: true, jwt: renewed.jwt, expiresAt: renewed.expiresAt.toISOString() })
        })
      )
    })
  yield* answerEach(sub, "NatsAccounts.answerRenewal", answer)
})
