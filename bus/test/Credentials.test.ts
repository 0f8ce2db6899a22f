import { decode } from "@nats-io/jwt"
import { createAccount } from "@nats-io/nkeys"
import { Effect, Redacted } from "effect"
import { describe, expect, it } from "vitest"
import { Credentials, makeId } from "../src/index.js"

const signingKey = createAccount()
const account = {
  accountPublicKey: createAccount().getPublicKey(),
  signingSeed: Redacted.make(new TextDecoder().decode(signingKey.getSeed()))
}

describe("credentials", () => {
  it("mint a user JWT signed by the account signing key, with its permissions and expiry", async () => {
    const node = makeId("node")
    const user = await Effect.runPromise(
      Credentials.mintUser(account, `vm-agent-${node}`, Credentials.nodePermissions(node), { expiresInSeconds: 60 })
    )
    const claims = decode<{ pub: { allow: Array<string> }; sub: { allow: Array<string> }; issuer_account: string }>(
      user.jwt
    )
    expect(claims.iss).toBe(signingKey.getPublicKey())
    expect(claims.nats.issuer_account).toBe(account.accountPublicKey)
    expect(claims.nats.pub?.allow).toContain(`sam.agent.${node}.>`)
    expect(claims.nats.pub?.allow.some((s: string) => s.includes(">") && !s.includes(node))).toBe(false)
    expect(claims.nats.sub?.allow.every((s: string) => s.includes(node))).toBe(true)
    expect(claims.exp).toBeGreaterThan(Date.now() / 1000 + 50)
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
