import { encodeUser, fmtCreds } from "@nats-io/jwt"
import { createUser, fromSeed } from "@nats-io/nkeys"
import { Effect, Redacted } from "effect"
import { NatsError } from "./Errors.js"
import {
  agentAll,
  ingressAll,
  nodeAll,
  nodeConsumerName,
  nodeInboxPrefix,
  ptyAll,
  userInboxPrefix
} from "./Subjects.js"

/**
 * Minting NATS user credentials. The control plane holds the SAM account's signing key (an nkey
 * seed starting `SA`); users it signs get exactly the subjects listed here and nothing else, which
 * the server enforces (design §4).
 */

export interface Permissions {
  readonly publish: { readonly allow: ReadonlyArray<string>; readonly deny?: ReadonlyArray<string> }
  readonly subscribe: { readonly allow: ReadonlyArray<string>; readonly deny?: ReadonlyArray<string> }
}

export interface SigningAccount {
  /** the account's public key (`A…`), set as `issuer_account` */
  readonly accountPublicKey: string
  /** the account signing key seed (`SA…`) */
  readonly signingSeed: Redacted.Redacted<string>
}

export interface MintedUser {
  readonly publicKey: string
  readonly jwt: string
  /** the `.creds` file content: JWT and user seed; a secret */
  readonly creds: Redacted.Redacted<string>
  readonly expiresAt: Date | undefined
}

/** Unlimited, explicitly: a partly given limit block makes the server default the rest to 0. */
const unlimited = { subs: -1, data: -1, payload: -1 } as const

export const mintUser = Effect.fn("Bus.mintUser")(function* (
  account: SigningAccount,
  name: string,
  permissions: Permissions,
  options: { readonly expiresInSeconds?: number } = {}
) {
  const signer = yield* Effect.try({
    try: () => fromSeed(new TextEncoder().encode(Redacted.value(account.signingSeed))),
    catch: (cause) => new NatsError({ reason: "Permission", message: "invalid account signing seed", cause })
  })
  const user = createUser()
  const exp =
    options.expiresInSeconds === undefined ? undefined : Math.floor(Date.now() / 1000) + options.expiresInSeconds
  const jwt = yield* Effect.tryPromise({
    try: () =>
      encodeUser(
        name,
        user,
        signer,
        {
          issuer_account: account.accountPublicKey,
          pub: { allow: [...permissions.publish.allow], deny: [...(permissions.publish.deny ?? [])] },
          sub: { allow: [...permissions.subscribe.allow], deny: [...(permissions.subscribe.deny ?? [])] },
          ...unlimited
        },
        exp === undefined ? {} : { exp }
      ),
    catch: (cause) => new NatsError({ reason: "Permission", message: `cannot mint user ${name}`, cause })
  })
  return {
    publicKey: user.getPublicKey(),
    jwt,
    creds: Redacted.make(new TextDecoder().decode(fmtCreds(jwt, user))),
    expiresAt: exp === undefined ? undefined : new Date(exp * 1000)
  } satisfies MintedUser
})

/**
 * A node's vm-agent: consume its own commands through its own durable consumer on SAM_NODE, publish
 * its own reports, heartbeats and terminal output, and receive replies only under its own inbox
 * prefix (connect with `inboxPrefix: nodeInboxPrefix(nodeId)`). It cannot create, delete or read
 * any other consumer, stream or bucket.
 */
export const nodePermissions = (nodeId: string): Permissions => {
  const durable = nodeConsumerName(nodeId)
  return {
    publish: {
      allow: [
        agentAll(nodeId),
        ptyAll(nodeId),
        `$JS.API.CONSUMER.INFO.SAM_NODE.${durable}`,
        `$JS.API.CONSUMER.MSG.NEXT.SAM_NODE.${durable}`,
        `$JS.ACK.SAM_NODE.${durable}.>`
      ]
    },
    subscribe: { allow: [nodeAll(nodeId), ptyAll(nodeId), `${nodeInboxPrefix(nodeId)}.>`] }
  }
}

/**
 * A programmatic client, bound to the API token it was minted with (ADR 0011): request/reply on
 * `sam.in.<userId>.<tokenId>.>` only, replies only under its own inbox prefix (connect with
 * `inboxPrefix: userInboxPrefix(userId, tokenId)`). The ingress checks that token on every request,
 * so revoking the token stops these credentials although the JWT itself stays valid until it expires.
 */
export const userPermissions = (userId: string, tokenId: string): Permissions => ({
  publish: { allow: [ingressAll(userId, tokenId)] },
  subscribe: { allow: [`${userInboxPrefix(userId, tokenId)}.>`] }
})

/** The control plane and operators: everything inside the SAM account. */
export const adminPermissions: Permissions = {
  publish: { allow: [">"] },
  subscribe: { allow: [">"] }
}
