import { KvWatchInclude } from "@nats-io/kv"
import { Kv, type Nats, NatsError, Topology } from "@sam/bus"
import { Cause, Effect, Fiber, Option } from "effect"
import type { AnyActorKind } from "../ActorKind.js"
import { resetConsumer } from "./Consumer.js"
import { isFree, LeaseValue, leaseKey, MemberValue, memberKey, memberPrefix, plan, target } from "./LeasePlan.js"
import type { RuntimeEvent, Settings } from "./Settings.js"
import { type ShardHandle, startShard } from "./Shard.js"
import type { Store } from "./Store.js"

const BUCKET = Topology.Buckets.leases.name
/**
 * How long a stopping instance tries to hand a lease or its membership back before leaving it to
 * expire (finalizers run uninterruptibly: the KV call is made interruptible so the timeout can end it).
 */
const GIVE_BACK_TIMEOUT = "1 second"

interface Owned {
  readonly epoch: number
  revision: number
  readonly handle: ShardHandle
}

export interface LeaseManager {
  readonly kind: string
  readonly owned: () => ReadonlyArray<ShardHandle>
  /**
   * Stop renewing and give every shard back (drained, then freed in KV), and the membership, all at once: one
   * after another, each shard's drain and give-back timeout would add up.
   */
  readonly close: Effect.Effect<void>
}

/**
 * Hold this instance's share of one kind's shard leases: announce the instance, renew what it holds
 * (losing a shard the moment a renewal fails), give up shards beyond its share and take free ones.
 * Taking raises the epoch in KV (compare-and-set) and then the Postgres fence, before any consuming.
 */
export const manageLeases = (deps: {
  readonly nats: Nats["Type"]
  readonly store: Store
  readonly kind: AnyActorKind
  readonly settings: Settings
  readonly fork: <A, E>(effect: Effect.Effect<A, E>) => Fiber.RuntimeFiber<A, E>
  readonly emit: (event: RuntimeEvent) => void
}) =>
  Effect.gen(function* () {
    const { kind, settings, store, nats } = deps
    const me = settings.instanceId
    const ttl = settings.leaseTtlMs
    const leases = yield* Kv.open(BUCKET, LeaseValue)
    const members = yield* Kv.open(BUCKET, MemberValue)
    const raw = yield* Effect.tryPromise({
      try: () => nats.kvm.open(BUCKET),
      catch: (cause) => new NatsError({ reason: "Kv", message: `open ${BUCKET}: ${cause}`, cause })
    })
    const owned = new Map<number, Owned>()

    /**
     * The kind's members as KV has them (instance key → its expiry), kept by one watcher of their puts and deletes.
     * Listing them every tick made a consumer on the server each time, two a second per kind, each one written to
     * its disk (a nats-server restarted after a day of `sam up` recovered 735 of them). Seeded by one listing, after
     * the watcher started, so nothing put in between is missed; every member re-puts its key each tick anyway.
     */
    const memberExpiry = new Map<string, number>()
    const watchMembers = Effect.tryPromise({
      try: () => raw.watch({ key: memberPrefix(kind.name), include: KvWatchInclude.UpdatesOnly }),
      catch: (cause) => new NatsError({ reason: "Kv", message: `watch members: ${cause}`, cause })
    })
    /**
     * Since when this instance's own put has not come back through the watcher (undefined: it has). Every tick puts
     * it, so a watcher that brings nothing back for a lease TTL is stuck: its consumer gone on the server (deleted,
     * lost in a restart), which the client library only notices after two missed 30 s heartbeats. Meanwhile every
     * other member would expire here and this instance would keep every shard.
     */
    let unechoedSince: number | undefined
    const stuck = Effect.gen(function* () {
      while (unechoedSince === undefined || Date.now() - unechoedSince < ttl) yield* Effect.sleep(settings.renewEveryMs)
      return yield* new NatsError({ reason: "Kv", message: `watch members: no put came back through it for ${ttl} ms` })
    })
    const follow = (watcher: Awaited<ReturnType<typeof raw.watch>>) =>
      Effect.promise(async () => {
        unechoedSince = undefined
        for await (const entry of watcher) {
          if (entry.key === memberKey(kind.name, me)) unechoedSince = undefined
          const value = entry.operation === "PUT" ? MemberValue.safeParse(entry.json()) : undefined
          if (value?.success === true) memberExpiry.set(entry.key, value.data.expiresAt)
          else memberExpiry.delete(entry.key)
        }
      }).pipe(Effect.raceFirst(stuck), Effect.ensuring(Effect.sync(() => watcher.stop())))
    const seedMembers = Effect.gen(function* () {
      // each key once (`KvStore.keys`): a member that renews during the listing would shrink everyone's share
      const keys = yield* members.keys(memberPrefix(kind.name))
      const values = yield* Effect.forEach(keys, (key) => members.get(key).pipe(Effect.orElseSucceed(Option.none)), {
        concurrency: 8
      })
      keys.forEach((key, i) => {
        const value = values[i]
        if (value !== undefined && Option.isSome(value) && !memberExpiry.has(key))
          memberExpiry.set(key, value.value.value.expiresAt)
      })
    })
    /**
     * A watcher that ends (its connection lost for good, the server restarted) is made again and seeded again, a
     * tick later: one that ends at once cannot spin.
     */
    const watchFailed = (cause: Cause.Cause<unknown>) =>
      Effect.logWarning(`watching ${kind.name}'s members failed`, Cause.pretty(cause))
    const keepWatching = Effect.gen(function* () {
      const watcher = yield* watchMembers
      yield* seedMembers
      yield* follow(watcher)
    }).pipe(Effect.catchAllCause(watchFailed), Effect.zipRight(Effect.sleep(settings.renewEveryMs)), Effect.forever)
    /** The members whose key has not expired (an expired one is forgotten; its next put brings it back). */
    const liveMembers = (now: number) =>
      Effect.sync(() => {
        for (const [key, expiresAt] of memberExpiry) if (expiresAt <= now) memberExpiry.delete(key)
        return Math.max(1, memberExpiry.size)
      })

    const drop = (shard: number, why: string) =>
      Effect.gen(function* () {
        const held = owned.get(shard)
        if (held === undefined) return
        owned.delete(shard)
        yield* held.handle.stop(false)
        deps.emit({ _tag: "Lost", kind: kind.name, shard, epoch: held.epoch, why })
      })

    const release = (shard: number) =>
      Effect.gen(function* () {
        const held = owned.get(shard)
        if (held === undefined) return
        owned.delete(shard)
        yield* held.handle.stop(true)
        // Bounded, and not tried with NATS out of reach (a stop during an outage): the lease then expires.
        if (nats.reachable()) {
          const key = leaseKey(kind.name, shard)
          const free = { owner: "", epoch: held.epoch, expiresAt: 0 }
          yield* leases.update(key, free, held.revision).pipe(
            // A renewal the stop interrupted may have moved the lease on without this instance hearing its new
            // revision: given back at the revision KV has, while it is still ours (else it waited out its TTL).
            Effect.catchTag("KvConflict", () =>
              leases
                .get(key)
                .pipe(
                  Effect.flatMap((current) =>
                    Option.isSome(current) &&
                    current.value.value.owner === me &&
                    current.value.value.epoch === held.epoch
                      ? leases.update(key, free, current.value.revision)
                      : Effect.void
                  )
                )
            ),
            Effect.interruptible,
            Effect.timeout(GIVE_BACK_TIMEOUT),
            Effect.ignore
          )
        }
        deps.emit({ _tag: "Released", kind: kind.name, shard, epoch: held.epoch })
      })

    const take = (shard: number) =>
      Effect.gen(function* () {
        const key = leaseKey(kind.name, shard)
        const current = yield* leases.get(key)
        const now = Date.now()
        if (Option.isSome(current) && !isFree(current.value.value, now)) return
        const fenced = yield* store.readFence(kind.name, shard)
        const epoch = Math.max(Option.isSome(current) ? current.value.value.epoch : 0, fenced) + 1
        const value = { owner: me, epoch, expiresAt: now + ttl }
        const revision = Option.isSome(current)
          ? yield* leases.update(key, value, current.value.revision)
          : yield* leases.create(key, value)
        const giveBack = leases.update(key, { owner: "", epoch, expiresAt: 0 }, revision).pipe(Effect.ignore)
        const raised = yield* store
          .writeFence(kind.name, shard, epoch, me, Math.min(2_000, Math.floor(ttl / 3)))
          .pipe(Effect.orElseSucceed(() => false))
        if (!raised) return yield* giveBack
        yield* resetConsumer(nats, kind.name, shard, epoch, settings.shard).pipe(Effect.tapError(() => giveBack))
        const handle = yield* startShard({
          nats,
          store,
          kind,
          shard,
          epoch,
          settings: settings.shard,
          fork: deps.fork,
          emit: deps.emit,
          onFenced: () => undefined
        })
        owned.set(shard, { epoch, revision, handle })
        deps.emit({ _tag: "Acquired", kind: kind.name, shard, epoch })
      }).pipe(Effect.catchTag("KvConflict", () => Effect.void))

    const renew = (shard: number, held: Owned, now: number) =>
      held.handle.isActive()
        ? leases
            .update(leaseKey(kind.name, shard), { owner: me, epoch: held.epoch, expiresAt: now + ttl }, held.revision)
            .pipe(
              Effect.tap((revision) => Effect.sync(() => (held.revision = revision))),
              Effect.catchAll((error) => drop(shard, `renewal failed: ${error._tag}`))
            )
        : drop(shard, "fenced")

    /** Every shard's lease as KV has it now (one unreadable counts as held: nobody takes it this tick). */
    const readLeases = Effect.forEach(
      Array.from({ length: kind.shards }, (_, i) => i),
      (shard) =>
        leases.get(leaseKey(kind.name, shard)).pipe(
          Effect.map((entry) => [shard, Option.getOrUndefined(entry)?.value] as const),
          Effect.orElseSucceed(() => [shard, { owner: "?", epoch: 0, expiresAt: Number.MAX_SAFE_INTEGER }] as const)
        ),
      { concurrency: 8 }
    )

    const tick = Effect.gen(function* () {
      const now = Date.now()
      yield* Effect.forEach([...owned], ([shard, held]) => renew(shard, held, now), { concurrency: 8, discard: true })
      yield* members.put(memberKey(kind.name, me), { instance: me, expiresAt: now + ttl })
      unechoedSince ??= Date.now()
      // counted at once, not once the watcher brings the put back
      memberExpiry.set(memberKey(kind.name, me), now + ttl)
      const live = yield* liveMembers(now)
      // Holding its share (or more), an instance decides without the leases: reading every shard's each tick was
      // half of an idle control plane's requests to NATS (32 shards every 2 s), for a plan that takes nothing.
      const current = owned.size >= target(kind.shards, live) ? [] : yield* readLeases
      const decision = plan({
        shards: kind.shards,
        me,
        owned: [...owned.keys()],
        leases: new Map(current),
        liveMembers: live,
        now
      })
      yield* Effect.forEach(decision.release, release, { discard: true })
      yield* Effect.forEach(decision.acquire, take, { concurrency: 4, discard: true })
    }).pipe(
      Effect.catchAllCause((cause) => Effect.logWarning(`lease tick for ${kind.name} failed`, Cause.pretty(cause)))
    )

    const loop = Effect.gen(function* () {
      while (true) {
        const started = Date.now()
        yield* tick
        yield* Effect.sleep(Math.max(10, settings.renewEveryMs - (Date.now() - started)))
      }
    })

    // the first tick plans with the members there are: the watcher is running and seeded before it
    const seeded = yield* watchMembers
    yield* seedMembers
    const watching = deps.fork(
      follow(seeded).pipe(
        Effect.catchAllCause(watchFailed),
        Effect.zipRight(Effect.sleep(settings.renewEveryMs)),
        Effect.zipRight(keepWatching)
      )
    )
    const looping = deps.fork(loop)
    const close = Effect.gen(function* () {
      yield* Fiber.interrupt(looping)
      yield* Fiber.interrupt(watching)
      yield* Effect.all(
        [
          Effect.forEach([...owned.keys()], release, { concurrency: "unbounded", discard: true }),
          members
            .delete(memberKey(kind.name, me))
            .pipe(Effect.interruptible, Effect.timeout(GIVE_BACK_TIMEOUT), Effect.ignore, Effect.when(nats.reachable))
        ],
        { concurrency: "unbounded", discard: true }
      )
    })
    return {
      kind: kind.name,
      owned: () => [...owned.values()].map((held) => held.handle),
      close
    } satisfies LeaseManager
  })
