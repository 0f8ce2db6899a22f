import { decode } from "@nats-io/jwt"
import { createAccount, createOperator } from "@nats-io/nkeys"
import { Effect, Redacted } from "effect"
import { describe, expect, it } from "vitest"
import { Accounts, Credentials, makeId } from "../src/index.js"

const seed = (kp: { getSeed(): Uint8Array }) => Redacted.make(new TextDecoder().decode(kp.getSeed()))
const operatorSigning = createOperator()
const nodesSigning = createAccount()
const authority: Accounts.Authority = {
  samAccountPublicKey: createAccount().getPublicKey(),
  operatorSigningSeed: seed(operatorSigning),
  nodesSigningSeed: seed(nodesSigning),
  clientsSigningSeed: seed(createAccount())
}
const signingKey = createAccount()
const account = {
  accountPublicKey: createAccount().getPublicKey(),
  signingSeed: Redacted.make(new TextDecoder().decode(signingKey.getSeed()))
}

describe("credentials", () => {
  it("a node-made user key: its seed makes the creds for a JWT signed for its public key; only the key travels", async () => {
    const key = Credentials.newUserKey()
    expect(key.publicKey).toMatch(/^U[A-Z2-7]{55}$/)
    expect(String(key.seed)).not.toContain("SU")
    const node = makeId("node")
    const signed = await Effect.runPromise(
      Accounts.renewPartyUser(
        authority,
        { kind: "node", nodeId: node },
        createAccount().getPublicKey(),
        key.publicKey,
        60
      )
    )
    expect(decode(signed.jwt).sub).toBe(key.publicKey)
    const creds = Redacted.value(Credentials.credsText(signed.jwt, key.seed))
    expect(creds).toContain(signed.jwt)
    expect(creds).toContain(Redacted.value(key.seed))
    // A kept seed gives the same key back; anything else is not a user seed.
    expect(Credentials.userKeyOf(Redacted.make(`${Redacted.value(key.seed)}\n`))?.publicKey).toBe(key.publicKey)
    expect(Credentials.userKeyOf(Redacted.make(new TextDecoder().decode(createAccount().getSeed())))).toBeUndefined()
    expect(Credentials.userKeyOf(Redacted.make("garbage"))).toBeUndefined()
  })

  it("a node's account imports only its own subjects from SAM, and revokes all its users when asked", async () => {
    const node = makeId("node")
    const key = Accounts.newAccountKey()
    const jwt = await Effect.runPromise(Accounts.accountJwt(authority, { kind: "node", nodeId: node }, key))
    const claims = decode<{
      imports: Array<{ subject: string; account: string; type: string }>
      signing_keys: Array<string>
      revocations?: Record<string, number>
      limits: { conn: number; leaf: number }
    }>(jwt)
    expect(claims.iss).toBe(operatorSigning.getPublicKey())
    expect(claims.sub).toBe(key)
    expect(claims.nats.signing_keys).toEqual([nodesSigning.getPublicKey()])
    for (const imp of claims.nats.imports ?? []) {
      expect(imp.account).toBe(authority.samAccountPublicKey)
      expect(imp.type).toBe("service")
      expect(imp.subject).toContain(node)
    }
    expect(claims.nats.revocations).toBeUndefined()
    const revoked = decode<{ revocations: Record<string, number> }>(
      await Effect.runPromise(
        Accounts.accountJwt(authority, { kind: "node", nodeId: node }, key, { revokedBefore: 1_900_000_000 })
      )
    )
    expect(revoked.nats.revocations).toEqual({ "*": 1_900_000_000 })
  })

  it("mint a user JWT of a party's account, signed by that kind's signing key, with its permissions and expiry", async () => {
    const node = makeId("node")
    const key = Accounts.newAccountKey()
    const user = await Effect.runPromise(Accounts.mintPartyUser(authority, { kind: "node", nodeId: node }, key, 60))
    const claims = decode<{ pub: { allow: Array<string> }; sub: { allow: Array<string> }; issuer_account: string }>(
      user.jwt
    )
    expect(claims.iss).toBe(nodesSigning.getPublicKey())
    expect(claims.nats.issuer_account).toBe(key)
    expect(claims.nats.pub?.allow).toContain(`sam.agent.${node}.>`)
    expect(claims.nats.pub?.allow.some((s: string) => s.includes(">") && !s.includes(node))).toBe(false)
    expect(claims.nats.sub?.allow.every((s: string) => s.includes(node))).toBe(true)
    expect(claims.exp).toBeGreaterThan(Date.now() / 1000 + 50)
    expect(claims.exp).toBeLessThan(Date.now() / 1000 + 70)
    expect(String(user.creds)).not.toContain("SU") // Redacted: the seed never prints
    expect(Redacted.value(user.creds)).toContain("BEGIN USER NKEY SEED")
  })

  it("fail clearly on a bad signing seed", async () => {
    const error = await Effect.runPromise(
      Effect.flip(
        Credentials.mintUser(
          { ...account, signingSeed: Redacted.make("not-a-seed") },
          "x",
          Credentials.adminPermissions
        )
      )
    )
    expect(error.message).toBe("invalid account signing seed")
  })
})
