import { PermissionViolationError, type Status } from "@nats-io/nats-core"
import { Accounts, Credentials, Nats, natsLayer, Subjects } from "@sam/bus"
import { Sql } from "@sam/sql"
import { Duration, Effect, Exit, Layer, Redacted, Scope } from "effect"
import pg from "pg"
import { afterAll, beforeAll, inject } from "vitest"
import * as Parties from "./Parties.js"
import { startPrivateNats } from "./PrivateNats.js"
import { type ProvidedStack, providedNats } from "./TestStack.js"

let ownNats: ProvidedStack | undefined

/** The shared stack of this test run (see globalSetup.ts), with this file's own nats-server if it took one. */
export const stack = (): ProvidedStack => ownNats ?? inject("stack")

/**
 * Give this test file a nats-server of its own, provisioned with the topology, in place of the shared
 * one: every helper here (`natsAdmin`, `natsAs`, `natsAsNode`, `partyCredentials`) then connects to
 * it. For files whose consumers read a shared stream from its end, such as a report ingress, which
 * would otherwise also take the reports of a file running beside them. Call it at the file's top.
 */
export const useOwnNats = () => {
  const scope = Effect.runSync(Scope.make())
  beforeAll(async () => {
    const nats = await Effect.runPromise(startPrivateNats.pipe(Scope.extend(scope)))
    ownNats = { ...inject("stack"), ...providedNats({ ...nats, controlPlaneCreds: nats.adminCreds }) }
  })
  afterAll(async () => {
    ownNats = undefined
    await Effect.runPromise(Scope.close(scope, Exit.void))
  })
}

export const signing = (): Credentials.SigningAccount => ({
  accountPublicKey: stack().accountPublicKey,
  signingSeed: Redacted.make(stack().signingSeed)
})

/** A NATS connection with the control plane's credentials. */
export const natsAdmin = (name = "test") =>
  natsLayer({ servers: stack().natsUrl, creds: Redacted.make(stack().controlPlaneCreds), name })

/** Connect with freshly minted credentials of the given permissions. */
export const natsAs = (name: string, permissions: Credentials.Permissions, inboxPrefix?: string) =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      const user = yield* Credentials.mintUser(signing(), name, permissions, { expiresInSeconds: 600 })
      return natsLayer({ servers: stack().natsUrl, creds: user.creds, name, inboxPrefix })
    })
  )

/** The shared stack's outside-party authority (ADR 0016). */
export const authority = (): Accounts.Authority => {
  const a = stack().authority
  return {
    samAccountPublicKey: a.samAccountPublicKey,
    operatorSigningSeed: Redacted.make(a.operatorSigningSeed),
    nodesSigningSeed: Redacted.make(a.nodesSigningSeed),
    clientsSigningSeed: Redacted.make(a.clientsSigningSeed)
  }
}

/** A party's own account and a user of it, on the shared stack (see Parties.ts). */
export const partyCredentials = (party: Accounts.Party, options: { readonly ttlSeconds?: number } = {}) =>
  Parties.partyCredentials(party, {
    natsUrl: stack().natsUrl,
    systemCreds: Redacted.make(stack().systemCreds),
    authority: authority(),
    ...options
  })

/** Connect as a node: a user of the node's own account, its inbox prefix and JetStream API prefix. */
export const natsAsNode = (nodeId: string, name = `vm-agent-${nodeId}`) =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      const { user } = yield* partyCredentials({ kind: "node", nodeId })
      return natsLayer({
        servers: stack().natsUrl,
        creds: user.creds,
        name,
        inboxPrefix: Subjects.nodeInboxPrefix(nodeId),
        jsApiPrefix: Accounts.nodeJsApiPrefix
      })
    })
  )

const random = () => Math.random().toString(36).slice(2, 10)

/** A unique token for names of streams, consumers, subjects and ids in one test. */
export const unique = (prefix = "t") => `${prefix}${random()}`

/** Create an empty database on the shared Postgres and return its URL. */
export const freshDatabase = async (): Promise<Redacted.Redacted<string>> => {
  const name = unique("db_")
  const client = new pg.Client({ connectionString: stack().databaseUrl })
  await client.connect()
  try {
    await client.query(`CREATE DATABASE ${name}`)
  } finally {
    await client.end()
  }
  return Redacted.make(stack().databaseUrl.replace(/\/[^/]+$/, `/${name}`))
}

export const sqlLayer = (url: Redacted.Redacted<string>) => Sql.layer(url, "sam-test")

export { Nats }

/**
 * Poll `check` until it returns a value (not undefined) or `timeout` passes; the failure names what
 * was awaited and the last value seen. For integration tests: wait on a condition, never a fixed delay.
 */
export const waitUntil = <A, E, R>(
  what: string,
  check: Effect.Effect<A | undefined, E, R>,
  options: { readonly timeout?: Duration.DurationInput; readonly every?: Duration.DurationInput } = {}
): Effect.Effect<A, E | Error, R> =>
  Effect.gen(function* () {
    const deadline = Date.now() + Duration.toMillis(Duration.decode(options.timeout ?? "10 seconds"))
    for (;;) {
      const value = yield* check
      if (value !== undefined) return value
      if (Date.now() > deadline) return yield* Effect.fail(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep(options.every ?? "50 millis")
    }
  })

/** The next permissions error the server reports on a connection (its `status()` iterator), within 5 s. */
export const nextPermissionError = (status: AsyncIterable<Status>) =>
  Effect.promise(async () => {
    for await (const s of status) {
      if (s.type === "error" && s.error instanceof PermissionViolationError) return s.error
    }
    throw new Error("connection closed without a permission error")
  }).pipe(Effect.timeout("5 seconds"))
