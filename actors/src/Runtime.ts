import { hostname } from "node:os"
import { SqlClient } from "@effect/sql"
import { Nats } from "@sam/bus"
import { Cause, Chunk, Context, Duration, Effect, FiberSet, Layer, Queue } from "effect"
import type { AnyActorKind } from "./ActorKind.js"
import { sanitizeInstance } from "./internal/LeasePlan.js"
import { type LeaseManager, manageLeases } from "./internal/Leases.js"
import { publishNow, publishRows } from "./internal/Relay.js"
import { type RuntimeEvent, type RuntimeOptions, resolve } from "./internal/Settings.js"
import { type ClaimedRow, makeStore } from "./internal/Store.js"

/** The oldest outbox rows looked at by one prune statement, and statements per prune. */
const PRUNE_BATCH = 5_000
const PRUNE_ROUNDS = 20

export type { Applied, RuntimeEvent, RuntimeOptions } from "./internal/Settings.js"

export interface LocalShard {
  readonly kind: string
  readonly shard: number
  readonly epoch: number
  readonly mailboxes: number
  readonly depth: number
}

export interface ActorRuntimeShape {
  readonly instanceId: string
  /** the shards this instance holds now, with their live mailboxes and queued commands */
  readonly shards: () => ReadonlyArray<LocalShard>
}

export class ActorRuntime extends Context.Tag("sam/ActorRuntime")<ActorRuntime, ActorRuntimeShape>() {}

const defaultInstanceId = () =>
  sanitizeInstance(`${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`)

/** How long published outbox rows wait to be marked sent together (the relay takes them only after 2 s). */
const MARK_EVERY = Duration.millis(50)

/**
 * Run actor kinds in this process: lease a share of each kind's shards, consume them, relay the
 * outbox and fire due timers. Several runtimes (in one process or many) share the work through the
 * leases. Closing the scope releases the leases gracefully (drains mailboxes, then frees the shards).
 */
export const make = Effect.fn("ActorRuntime.make")(function* (
  kinds: ReadonlyArray<AnyActorKind>,
  options: RuntimeOptions = {}
) {
  const nats = yield* Nats
  const sql = yield* SqlClient.SqlClient
  const settings = resolve(options, defaultInstanceId())
  // A commit publishes its outbox rows at once, in commit order (the publishes are issued on one connection before
  // anything else runs), and marks them sent once JetStream has them; the relay publishes what is left unmarked.
  const publisher = nats.streams
  const published = yield* Queue.unbounded<string>()
  const publishCommitted = (rows: ReadonlyArray<ClaimedRow>) => {
    publishNow(publisher, rows).then(
      () => {
        for (const row of rows) Queue.unsafeOffer(published, row.messageId)
      },
      () => undefined // the relay publishes them after the grace
    )
  }
  const store = makeStore(sql, settings.idleInTransactionMs, publishCommitted)
  const run = yield* FiberSet.makeRuntime<never>()
  const fork = <A, E>(effect: Effect.Effect<A, E>) => run(effect)
  const emit = (event: RuntimeEvent) => {
    options.onEvent?.(event)
    if (event._tag !== "Acquired" && event._tag !== "Released") {
      fork(Effect.logWarning(`actor runtime ${settings.instanceId}: ${event._tag}`).pipe(Effect.annotateLogs(event)))
    }
  }

  const poll = (name: string, step: Effect.Effect<number, unknown>) =>
    Effect.gen(function* () {
      while (true) {
        const n = yield* step.pipe(
          Effect.catchAllCause((cause) =>
            Effect.logWarning(`${name} failed; retrying`, Cause.pretty(cause)).pipe(Effect.as(0))
          )
        )
        if (n > 0) continue
        yield* Effect.sleep(settings.pollEveryMs)
      }
    })
  // Marks for every row published meanwhile in one statement, at most one every MARK_EVERY (well inside the
  // relay's grace): a hop's commit then costs no statement of its own. A mark that fails has the relay publish again.
  fork(
    Effect.gen(function* () {
      while (true) {
        const first = yield* Queue.take(published)
        yield* Effect.sleep(MARK_EVERY)
        const ids = [first, ...Chunk.toReadonlyArray(yield* Queue.takeAll(published))]
        yield* store
          .markSent(ids)
          .pipe(
            Effect.catchAllCause((cause) =>
              Effect.logWarning("marking published outbox rows failed; the relay publishes them", Cause.pretty(cause))
            )
          )
      }
    })
  )
  fork(poll("outbox relay", store.relayOutbox(200, publishRows(publisher))))
  fork(poll("timer poller", store.fireTimers(200, publishRows(publisher))))
  // Published outbox rows go once JetStream no longer needs them to drop a repeat, and inbox rows once
  // SAM_CMD no longer holds their command (every instance prunes; deleting the same rows twice is
  // harmless), a bounded batch at a time.
  const prune = (what: string, step: Effect.Effect<number, unknown>) =>
    Effect.gen(function* () {
      // a bounded amount of work per round: a backlog older than the retention goes over a few rounds
      for (let round = 0, deleted = 1; deleted > 0 && round < PRUNE_ROUNDS; round++) {
        deleted = yield* step.pipe(
          Effect.catchAllCause((cause) =>
            Effect.logWarning(`pruning the ${what} failed; trying again later`, Cause.pretty(cause)).pipe(Effect.as(0))
          )
        )
      }
    })
  fork(
    Effect.gen(function* () {
      while (true) {
        yield* Effect.sleep(settings.pruneEveryMs)
        yield* prune("outbox", store.pruneOutbox(settings.outboxRetentionMs, PRUNE_BATCH))
        yield* prune("inbox", store.pruneInbox(settings.inboxRetentionMs, PRUNE_BATCH))
      }
    })
  )

  const managers: Array<LeaseManager> = []
  // Every kind's shards are given back together when the scope closes (a stop during a NATS outage is then
  // bounded by one drain and one give-back timeout, not by their sum over the shards).
  yield* Effect.addFinalizer(() =>
    Effect.forEach(managers, (manager) => manager.close, { concurrency: "unbounded", discard: true })
  )
  for (const kind of kinds) managers.push(yield* manageLeases({ nats, store, kind, settings, fork, emit }))

  return ActorRuntime.of({
    instanceId: settings.instanceId,
    shards: () =>
      managers.flatMap((manager) =>
        manager.owned().map((handle) => ({
          kind: handle.kind,
          shard: handle.shard,
          epoch: handle.epoch,
          mailboxes: handle.mailboxes(),
          depth: handle.depth()
        }))
      )
  })
})

export const layer = (kinds: ReadonlyArray<AnyActorKind>, options: RuntimeOptions = {}) =>
  Layer.scoped(ActorRuntime, make(kinds, options))
