import { describe, expect, it } from "@effect/vitest"
import type { ActorRuntime } from "@sam/actors"
import { Nats } from "@sam/bus"
import { Effect, Layer, type Redacted } from "effect"
import { beforeAll } from "vitest"
import { actorsDatabase, waitUntil } from "../../src/ActorsHarness.js"
import { startRuntime } from "../../src/ActorsInProcess.js"
import { counterKind } from "../../src/CounterActor.js"
import { natsAdmin, sqlLayer, unique } from "../../src/Env.js"

let url: Redacted.Redacted<string>
beforeAll(async () => {
  url = await actorsDatabase()
})
const env = () => Layer.merge(natsAdmin("actors-members-watch"), sqlLayer(url))

describe("actor runtime: the members watcher", () => {
  it.scopedLive(
    "an instance that holds its share renews its leases without reading them; one short of its share reads them",
    () =>
      Effect.gen(function* () {
        const kind = counterKind(unique("k"), 8)
        // every request for one of this kind's leases, as the server gets it (a direct get names the key in its subject,
        // a stream message get in its body)
        const { nc } = yield* Nats
        const reads: Array<number> = []
        const mentions = (text: string) => text.includes(`lease.${kind.name}.`)
        const subs = ["$JS.API.DIRECT.GET.KV_sam_leases.>", "$JS.API.STREAM.MSG.GET.KV_sam_leases"].map((subject) =>
          nc.subscribe(subject, {
            callback: (_error, msg) => {
              if (mentions(msg.subject) || mentions(new TextDecoder().decode(msg.data))) reads.push(Date.now())
            }
          })
        )
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            for (const sub of subs) sub.unsubscribe()
          })
        )
        yield* Effect.promise(() => nc.flush())
        // and every write of one (a renewal is a put on its key's subject)
        let writes = 0
        const written = nc.subscribe(`$KV.sam_leases.lease.${kind.name}.>`, { callback: () => void writes++ })
        yield* Effect.addFinalizer(() => Effect.sync(() => written.unsubscribe()))
        yield* Effect.promise(() => nc.flush())
        const a = yield* startRuntime(url, [kind], { instanceId: unique("a"), leaseTtl: "3 seconds" })
        yield* waitUntil(
          "the instance holds every shard",
          Effect.sync(() => a.shards().length === 8),
          20_000
        )
        expect(reads.length).toBeGreaterThan(0) // it read them to take them
        const readsBefore = reads.length
        const writesBefore = writes
        // four ticks (600 ms apart) of holding all eight: renewed, not read
        yield* waitUntil(
          "four ticks of renewals",
          Effect.sync(() => writes - writesBefore >= 4 * 8),
          10_000
        )
        expect(reads.length).toBe(readsBefore)
        // a second instance is short of its share: it reads the leases, and the two end with half each
        const b = yield* startRuntime(url, [kind], { instanceId: unique("b"), leaseTtl: "3 seconds" })
        yield* waitUntil(
          "the two instances hold half the shards each",
          Effect.sync(() => a.shards().length === 4 && b.shards().length === 4),
          15_000
        )
        expect(reads.length).toBeGreaterThan(readsBefore)
      }).pipe(Effect.provide(env())),
    60_000
  )

  it.scopedLive(
    "a watcher whose consumer is gone is made again: the first instance still learns of a second and gives it half",
    () =>
      Effect.gen(function* () {
        const kind = counterKind(unique("k"), 8)
        const options = (name: string): ActorRuntime.RuntimeOptions => ({
          instanceId: unique(name),
          leaseTtl: "3 seconds"
        })
        const a = yield* startRuntime(url, [kind], options("a"))
        yield* waitUntil(
          "the first instance holds every shard",
          Effect.sync(() => a.shards().length === 8),
          20_000
        )
        // The server loses the consumer of A's members watcher (deleted, as a restarted server or an operator may).
        // The client library only reports that; it makes the consumer again after two missed 30 s heartbeats.
        const { jsm } = yield* Nats
        const watchers = yield* Effect.promise(async () => {
          const out: Array<string> = []
          for await (const info of jsm.consumers.list("KV_sam_leases"))
            if (
              info.config.filter_subject === `$KV.sam_leases.member.${kind.name}.>` &&
              info.config.deliver_policy === "new"
            )
              out.push(info.name)
          return out
        })
        expect(watchers).toHaveLength(1)
        yield* Effect.promise(() => Promise.all(watchers.map((name) => jsm.consumers.delete("KV_sam_leases", name))))
        const b = yield* startRuntime(url, [kind], options("b"))
        yield* waitUntil(
          "the two instances hold half the shards each",
          Effect.sync(() => a.shards().length === 4 && b.shards().length === 4),
          15_000
        )
      }).pipe(Effect.provide(env())),
    60_000
  )
})
