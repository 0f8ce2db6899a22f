import { Kv, Nats, Topology } from "@sam/bus"
import { Duration, Effect, Exit, Fiber, Option, Scope } from "effect"
import { z } from "zod"

/**
 * One holder at a time for a piece of work that must not run twice side by side (the report
 * ingress: two consumers of one durable would interleave a session's reports). The lease is a key
 * in KV `sam_leases` written with compare-and-set; its holder renews it every third of the TTL and
 * stops the work as soon as a renewal fails; another instance takes it once it has expired, or at
 * once when the holder releases it on shutdown.
 */
const LeaseValue = z.object({ owner: z.string(), expiresAt: z.number() })
/** between tries of a renewal that failed for want of NATS */
const RETRY_MS = 250
/** how long a holder that stops tries to hand the lease back before leaving it to expire */
const GIVE_BACK_TIMEOUT = "1 second"
type LeaseValue = z.infer<typeof LeaseValue>

export interface LeaseOptions {
  readonly key: string
  readonly owner: string
  readonly ttl?: Duration.DurationInput
}

export const whileHeld = Effect.fn("IngressLease.whileHeld")(function* <E, R>(
  options: LeaseOptions,
  /** the work of one holding, given the lease's KV revision at its start (it grows with every holding) */
  work: (revision: number) => Effect.Effect<void, E, R | Scope.Scope>
) {
  const nats = yield* Nats
  const store = yield* Kv.open(Topology.Buckets.leases.name, LeaseValue)
  const ttlMs = Duration.toMillis(Duration.decode(options.ttl ?? "10 seconds"))
  const every = Math.max(50, Math.floor(ttlMs / 3))
  const next = (): LeaseValue => ({ owner: options.owner, expiresAt: Date.now() + ttlMs })

  /** the revision now held and whose expired lease it was (none: nobody held it), or none */
  const take: Effect.Effect<Option.Option<{ readonly revision: number; readonly from: string | undefined }>> =
    Effect.gen(function* () {
      const current = yield* store.get(options.key).pipe(Effect.orElseSucceed(() => Option.none()))
      if (Option.isNone(current)) {
        const created = yield* store.create(options.key, next()).pipe(Effect.option)
        return Option.map(created, (revision) => ({ revision, from: undefined }))
      }
      const { value, revision } = current.value
      if (value.owner !== options.owner && value.expiresAt > Date.now()) return Option.none()
      const updated = yield* store.update(options.key, next(), revision).pipe(Effect.option)
      return Option.map(updated, (revision) => ({ revision, from: value.owner }))
    })

  const hold = (revision: number, from: string | undefined) =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const fiber = yield* work(revision).pipe(Scope.extend(scope), Effect.forkDaemon)
      // A lease nobody held is the start of an instance (`sam up`'s own steps say so); one taken when it expired
      // is a failover an operator wants to see.
      if (from === undefined) yield* Effect.logDebug(`${options.owner} holds ${options.key}`)
      else if (from === options.owner) yield* Effect.logInfo(`${options.owner} holds ${options.key} again`)
      else yield* Effect.logInfo(`${options.owner} holds ${options.key}: the lease of ${from} had expired`)
      let held = revision
      let heldUntil = Date.now() + ttlMs
      yield* Effect.gen(function* () {
        while (true) {
          yield* Effect.sleep(every)
          // A renewal that fails for want of NATS (it restarted a moment ago) is tried again while the
          // lease still holds; giving the lease up at once stopped the work and made reports wait.
          // A conflict means the key is no longer ours: stop.
          let renewed = yield* store.update(options.key, next(), held).pipe(Effect.either)
          while (
            renewed._tag === "Left" &&
            renewed.left._tag !== "KvConflict" &&
            Date.now() + RETRY_MS < heldUntil - RETRY_MS
          ) {
            yield* Effect.sleep(RETRY_MS)
            renewed = yield* store.update(options.key, next(), held).pipe(Effect.either)
          }
          if (renewed._tag === "Left") return
          held = renewed.right
          heldUntil = Date.now() + ttlMs
        }
      }).pipe(
        Effect.ensuring(
          Effect.gen(function* () {
            yield* Fiber.interrupt(fiber)
            yield* Scope.close(scope, Exit.void)
            // Released on the way out so that another instance need not wait for the TTL. Not with NATS out of
            // reach, nor for longer than a second: the KV calls would wait out their 5 s request timeout and
            // hold up a stopping `sam up`; the lease then expires. Interruptible, as this runs on the way out.
            if (!nats.reachable()) return yield* Effect.logInfo(`${options.owner} left ${options.key} to expire`)
            yield* store.get(options.key).pipe(
              Effect.flatMap((entry) =>
                Option.isSome(entry) && entry.value.value.owner === options.owner
                  ? store.delete(options.key)
                  : Effect.void
              ),
              Effect.interruptible,
              Effect.timeout(GIVE_BACK_TIMEOUT),
              Effect.ignore
            )
            yield* Effect.logInfo(`${options.owner} gave up ${options.key}`)
          })
        )
      )
    })

  while (true) {
    const taken = yield* take
    if (Option.isSome(taken)) yield* hold(taken.value.revision, taken.value.from)
    yield* Effect.sleep(every)
  }
})
