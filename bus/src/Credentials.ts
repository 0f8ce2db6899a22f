import { encodeUser, fmtCreds } from "@nats-io/jwt"
import { createUser, fromSeed } from "@nats-io/nkeys"
import { Effect, Redacted } from "effect"
import { NatsError } from "./Errors.js"

/**
 * Minting NATS users of the SAM account, where the control plane's own processes connect. Nodes and
 * programmatic clients never get a user of this account: they get users of accounts of their own
 * (Accounts.ts, ADR 0016).
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

/** The control plane and operators: everything inside the SAM account. */
export const adminPermissions: Permissions = {
  publish: { allow: [">"] },
  subscribe: { allow: [">"] }
}

/**
 * A NATS user key pair made where it is used (a node before its bootstrap exchange, ADR 0027): only the
 * public key leaves; the seed stays with its maker, who joins it to a signed JWT with `credsText`.
 */
export const newUserKey = () => {
  const user = createUser()
  return { publicKey: user.getPublicKey(), seed: Redacted.make(new TextDecoder().decode(user.getSeed())) }
}

/** The user key of a kept seed (`SU…`), or undefined when it is not one. */
export const userKeyOf = (seed: Redacted.Redacted<string>) => {
  try {
    const text = Redacted.value(seed).trim()
    if (!text.startsWith("SU")) return undefined
    return { publicKey: fromSeed(new TextEncoder().encode(text)).getPublicKey(), seed: Redacted.make(text) }
  } catch {
    return undefined
  }
}

/** The `.creds` text for a JWT signed for the key of `seed` (a secret: it holds the seed). */
export const credsText = (jwt: string, seed: Redacted.Redacted<string>) =>
  Redacted.make(new TextDecoder().decode(fmtCreds(jwt, fromSeed(new TextEncoder().encode(Redacted.value(seed))))))
