import { Accounts, Nats, natsLayer } from "@sam/bus"
import { Effect, type Redacted } from "effect"

export interface PartyServer {
  readonly natsUrl: string
  /** a system-account user that may push account JWTs */
  readonly systemCreds: Redacted.Redacted<string>
  readonly authority: Accounts.Authority
  readonly ttlSeconds?: number
}

const push = (server: PartyServer, jwt: string) =>
  Effect.gen(function* () {
    const { nc } = yield* Nats
    yield* Accounts.pushAccount(nc, jwt)
  }).pipe(Effect.provide(natsLayer({ servers: server.natsUrl, creds: server.systemCreds, name: "test-accounts" })))

/**
 * Push a party's own account to the server (as the control plane makes it, without the ledger) and
 * mint a user of it: what a node or a programmatic client holds (ADR 0016). `revoke` revokes every
 * user of that account at the server.
 */
export const partyCredentials = Effect.fn("test.partyCredentials")(function* (
  party: Accounts.Party,
  server: PartyServer
) {
  const account = Accounts.newAccountKey()
  yield* push(server, yield* Accounts.accountJwt(server.authority, party, account))
  const user = yield* Accounts.mintPartyUser(server.authority, party, account, server.ttlSeconds ?? 600)
  const revoke = Effect.gen(function* () {
    const revokedBefore = Math.floor(Date.now() / 1000)
    yield* push(server, yield* Accounts.accountJwt(server.authority, party, account, { revokedBefore }))
  })
  return { account, user, revoke }
})
