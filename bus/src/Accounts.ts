import { encodeAccount, encodeUser, fmtCreds } from "@nats-io/jwt"
import type { Export, Import } from "@nats-io/jwt/lib/types.js"
import type { NatsConnection } from "@nats-io/nats-core"
import { createAccount, createUser, fromPublic, fromSeed, type KeyPair } from "@nats-io/nkeys"
import { Effect, Redacted } from "effect"
import { z } from "zod"
import type { MintedUser, Permissions } from "./Credentials.js"
import { NatsError } from "./Errors.js"
import { agentAll, ingressAll, nodeConsumerName, nodeInboxPrefix, token, userInboxPrefix } from "./Subjects.js"

/**
 * NATS accounts as the isolation boundary (ADR 0016). The streams, buckets and the control plane
 * live in the SAM account. Every party outside the control plane gets an account of its own: one
 * per node, one per API token that minted programmatic credentials. Such an account imports from
 * SAM exactly its own subjects as *services*, so the server rewrites every reply subject it sends
 * into SAM to a one-off `_R_.…` subject that routes back to it alone: a forged reply subject can
 * never name SAM's JetStream API, KV or another party's subjects. Revoking an account's users is
 * one account JWT pushed through the system account, and the server drops their connections.
 */

/** What signs the accounts and their users; held by the control plane and the gateway, never by a node. */
export interface Authority {
  /** the SAM account's public key: what the outside accounts import from */
  readonly samAccountPublicKey: string
  /** an operator signing key (`SO…`): signs account JWTs (the operator identity key stays on disk) */
  readonly operatorSigningSeed: Redacted.Redacted<string>
  /** signs the users of every node account (each node account lists it as its signing key) */
  readonly nodesSigningSeed: Redacted.Redacted<string>
  /** signs the users of every client account */
  readonly clientsSigningSeed: Redacted.Redacted<string>
}

/**
 * In a node account the JetStream API of its own consumer is imported under this prefix (an account
 * without JetStream answers `$JS.API.>` itself); the vm-agent's JetStream client uses it as `apiPrefix`.
 */
export const nodeJsApiPrefix = "sam.jsapi"

/** A pull request may wait this long for messages; its response route must outlive it. */
const PULL_RESPONSE_THRESHOLD_NANOS = 120_000_000_000

/** What SAM exports. Wildcards here; each importing account names only its own subjects. */
export const samExports: ReadonlyArray<Export> = [
  { name: "node-reports", subject: "sam.agent.>", type: "service", response_type: "Singleton" },
  {
    name: "node-consumer-next",
    subject: "$JS.API.CONSUMER.MSG.NEXT.SAM_NODE.*",
    type: "service",
    response_type: "Stream",
    response_threshold: PULL_RESPONSE_THRESHOLD_NANOS
  },
  {
    name: "node-consumer-info",
    subject: "$JS.API.CONSUMER.INFO.SAM_NODE.*",
    type: "service",
    response_type: "Singleton"
  },
  { name: "node-consumer-ack", subject: "$JS.ACK.SAM_NODE.>", type: "service", response_type: "Singleton" },
  { name: "ingress", subject: "sam.in.>", type: "service", response_type: "Singleton" }
]

/** Limits of an outside account: no JetStream of its own, no leaf nodes, no exports, few connections. */
const outsideLimits = {
  subs: 1000,
  data: -1,
  payload: -1,
  imports: -1,
  exports: 0,
  wildcards: true,
  conn: 8,
  leaf: 0
}

const nodeImports = (samAccount: string, nodeId: string): Array<Import> => {
  const durable = nodeConsumerName(nodeId)
  return [
    { name: "reports", subject: agentAll(nodeId), account: samAccount, type: "service" },
    {
      name: "consumer-next",
      subject: `$JS.API.CONSUMER.MSG.NEXT.SAM_NODE.${durable}`,
      local_subject: `${nodeJsApiPrefix}.CONSUMER.MSG.NEXT.SAM_NODE.${durable}`,
      account: samAccount,
      type: "service"
    },
    {
      name: "consumer-info",
      subject: `$JS.API.CONSUMER.INFO.SAM_NODE.${durable}`,
      local_subject: `${nodeJsApiPrefix}.CONSUMER.INFO.SAM_NODE.${durable}`,
      account: samAccount,
      type: "service"
    },
    { name: "consumer-ack", subject: `$JS.ACK.SAM_NODE.${durable}.>`, account: samAccount, type: "service" }
  ]
}

const clientImports = (samAccount: string, userId: string, tokenId: string): Array<Import> => [
  { name: "ingress", subject: ingressAll(userId, tokenId), account: samAccount, type: "service" }
]

/** Which party an outside account belongs to. */
export type Party =
  | { readonly kind: "node"; readonly nodeId: string }
  | { readonly kind: "client"; readonly userId: string; readonly tokenId: string }

export const partyName = (party: Party) =>
  party.kind === "node" ? `node-${token(party.nodeId)}` : `client-${token(party.userId)}-${token(party.tokenId)}`

const keyOf = (seed: Redacted.Redacted<string>, what: string) =>
  Effect.try({
    try: () => fromSeed(new TextEncoder().encode(Redacted.value(seed))),
    catch: (cause) => new NatsError({ reason: "Permission", message: `invalid ${what} seed`, cause })
  })

/** A new account key pair: only its public key is kept (the operator signs its JWT, a shared key its users). */
export const newAccountKey = () => createAccount().getPublicKey()

/**
 * The account JWT of an outside party. `revokedBefore` (unix seconds) revokes every user of the
 * account issued at or before it: the server closes their connections when it receives the JWT.
 */
export const accountJwt = Effect.fn("Accounts.accountJwt")(function* (
  authority: Authority,
  party: Party,
  accountPublicKey: string,
  options: { readonly revokedBefore?: number } = {}
) {
  const operator = yield* keyOf(authority.operatorSigningSeed, "operator signing")
  const signing = yield* keyOf(
    party.kind === "node" ? authority.nodesSigningSeed : authority.clientsSigningSeed,
    `${party.kind}s signing`
  )
  const imports =
    party.kind === "node"
      ? nodeImports(authority.samAccountPublicKey, party.nodeId)
      : clientImports(authority.samAccountPublicKey, party.userId, party.tokenId)
  return yield* Effect.tryPromise({
    try: () =>
      encodeAccount(
        partyName(party),
        fromPublic(accountPublicKey),
        {
          limits: outsideLimits,
          imports,
          signing_keys: [signing.getPublicKey()],
          ...(options.revokedBefore === undefined ? {} : { revocations: { "*": options.revokedBefore } })
        },
        { signer: operator }
      ),
    catch: (cause) => new NatsError({ reason: "Permission", message: `cannot encode ${partyName(party)}`, cause })
  })
})

/** The permissions of a node's user inside its own account (the imports already narrow it; this is the second wall). */
export const nodeUserPermissions = (nodeId: string): Permissions => {
  const durable = nodeConsumerName(nodeId)
  return {
    publish: {
      allow: [
        agentAll(nodeId),
        `${nodeJsApiPrefix}.CONSUMER.INFO.SAM_NODE.${durable}`,
        `${nodeJsApiPrefix}.CONSUMER.MSG.NEXT.SAM_NODE.${durable}`,
        `$JS.ACK.SAM_NODE.${durable}.>`
      ]
    },
    subscribe: { allow: [`${nodeInboxPrefix(nodeId)}.>`] }
  }
}

/** A programmatic client's user inside its token's account (ADR 0011's subjects). */
export const clientUserPermissions = (userId: string, tokenId: string): Permissions => ({
  publish: { allow: [ingressAll(userId, tokenId)] },
  subscribe: { allow: [`${userInboxPrefix(userId, tokenId)}.>`] }
})

const permissionsOf = (party: Party) =>
  party.kind === "node" ? nodeUserPermissions(party.nodeId) : clientUserPermissions(party.userId, party.tokenId)

const userClaims = (party: Party, accountPublicKey: string) => {
  const permissions = permissionsOf(party)
  return {
    issuer_account: accountPublicKey,
    pub: { allow: [...permissions.publish.allow], deny: [] },
    sub: { allow: [...permissions.subscribe.allow], deny: [] },
    subs: -1,
    data: -1,
    payload: -1
  }
}

/** A JWT for `user` in the party's account, valid for `ttlSeconds`, signed by that kind's signing key. */
const signUser = (authority: Authority, party: Party, accountPublicKey: string, user: KeyPair, ttlSeconds: number) =>
  Effect.gen(function* () {
    const signer = yield* keyOf(
      party.kind === "node" ? authority.nodesSigningSeed : authority.clientsSigningSeed,
      `${party.kind}s signing`
    )
    const exp = Math.floor(Date.now() / 1000) + Math.max(1, Math.floor(ttlSeconds))
    const jwt = yield* Effect.tryPromise({
      try: () => encodeUser(partyName(party), user, signer, userClaims(party, accountPublicKey), { exp }),
      catch: (cause) =>
        new NatsError({ reason: "Permission", message: `cannot sign a user of ${partyName(party)}`, cause })
    })
    return { jwt, expiresAt: new Date(exp * 1000) }
  })

/** A new user (a new key pair) of a party's account: the `.creds` holds its seed. */
export const mintPartyUser = Effect.fn("Accounts.mintPartyUser")(function* (
  authority: Authority,
  party: Party,
  accountPublicKey: string,
  ttlSeconds: number
) {
  const user = createUser()
  const { jwt, expiresAt } = yield* signUser(authority, party, accountPublicKey, user, ttlSeconds)
  return {
    publicKey: user.getPublicKey(),
    jwt,
    creds: Redacted.make(new TextDecoder().decode(fmtCreds(jwt, user))),
    expiresAt
  } satisfies MintedUser
})

/** A fresh JWT for a user key the party already holds (node credential renewal); no seed involved. */
export const renewPartyUser = Effect.fn("Accounts.renewPartyUser")(function* (
  authority: Authority,
  party: Party,
  accountPublicKey: string,
  userPublicKey: string,
  ttlSeconds: number
) {
  if (!userPublicKey.startsWith("U"))
    return yield* new NatsError({ reason: "Permission", message: "not a user public key" })
  const user: KeyPair = yield* Effect.try({
    try: () => fromPublic(userPublicKey),
    catch: (cause) => new NatsError({ reason: "Permission", message: "not a user public key", cause })
  })
  return yield* signUser(authority, party, accountPublicKey, user, ttlSeconds)
})

const ClaimsUpdateReply = z.union([
  z.object({ data: z.object({ code: z.number(), message: z.string().optional() }) }),
  z.object({ error: z.object({ code: z.number().optional(), description: z.string().optional() }) })
])

/**
 * Hand an account JWT to the server (and, in a cluster, to every server: the full resolver
 * replicates it) over the system account. Needs a connection with a system-account user.
 */
export const pushAccount = Effect.fn("Accounts.pushAccount")(function* (system: NatsConnection, jwt: string) {
  const reply = yield* Effect.tryPromise({
    try: () => system.request("$SYS.REQ.CLAIMS.UPDATE", new TextEncoder().encode(jwt), { timeout: 5000 }),
    catch: (cause) =>
      new NatsError({ reason: "Request", message: `the server did not take the account JWT: ${cause}`, cause })
  })
  const parsed = ClaimsUpdateReply.safeParse(
    yield* Effect.try(() => reply.json()).pipe(Effect.orElseSucceed(() => undefined))
  )
  if (!parsed.success)
    return yield* new NatsError({
      reason: "Request",
      message: `unexpected reply to a claims update: ${reply.string()}`
    })
  if ("error" in parsed.data)
    return yield* new NatsError({
      reason: "Request",
      message: `the server refused the account JWT: ${parsed.data.error.description ?? parsed.data.error.code}`
    })
  if (parsed.data.data.code !== 200)
    return yield* new NatsError({
      reason: "Request",
      message: `the server refused the account JWT: ${parsed.data.data.message ?? parsed.data.data.code}`
    })
})

/** The system-account user a control-plane process pushes account JWTs with: claims updates, nothing else. */
export const systemUserPermissions: Permissions = {
  publish: { allow: ["$SYS.REQ.CLAIMS.UPDATE", "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE"] },
  subscribe: { allow: ["_INBOX.>"] }
}

/** `sam.agent.<nodeId>.creds` — a node asks for a fresh JWT for the user key it holds (request/reply). */
export const NodeRenewRequest = z.object({ publicKey: z.string().regex(/^U[A-Z2-7]{55}$/) })
export const NodeRenewReply = z.union([
  z.object({ ok: z.literal(true), jwt: z.string(), expiresAt: z.iso.datetime() }),
  z.object({ ok: z.literal(false), error: z.string() })
])
export type NodeRenewReply = z.infer<typeof NodeRenewReply>
