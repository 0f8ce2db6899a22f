import { describe, expect, it } from "@effect/vitest"
import type { ActorRuntime } from "@sam/actors"
import { Nats, natsLayer, Topology } from "@sam/bus"
import { Context, Effect, Exit, Layer, type Redacted, Scope } from "effect"
import { beforeAll } from "vitest"
import { actorsDatabase, waitUntil } from "../../src/ActorsHarness.js"
import { startRuntime } from "../../src/ActorsInProcess.js"
import { counterKind } from "../../src/CounterActor.js"
import { natsAdmin, sqlLayer, unique } from "../../src/Env.js"
import { startPrivateNats } from "../../src/PrivateNats.js"

let url: Redacted.Redacted<string>
beforeAll(async () => {
  url = await actorsDatabase()
})

describe("actor runtime: stopping", () => {
  it.scopedLive(
    "a stopped instance gives its shards back at once, though a renewal moved them on unheard: the other takes them long before their TTL",
    () =>
      Effect.gen(function* () {
        const kind = counterKind(unique("k"), 8)
        const options = (name: string): ActorRuntime.RuntimeOptions => ({
          instanceId: unique(name),
          leaseTtl: "30 seconds",
          renewEvery: "200 millis"
        })
        const aScope = yield* Scope.make()
        const a = yield* startRuntime(url, [kind], options("a")).pipe(Scope.extend(aScope))
        const b = yield* startRuntime(url, [kind], options("b"))
        yield* waitUntil(
          "both instances share the shards",
          Effect.sync(() => a.shards().length === 4 && b.shards().length === 4),
          20_000
        )
        // A renewal of A's that its stop interrupted after KV took it: A never heard the lease's new revision. Done
        // here to each of A's leases, as KV would see it: the same value again. A gives them back all the same.
        const { kvm } = yield* Nats
        const leases = yield* Effect.promise(() => kvm.open(Topology.Buckets.leases.name))
        for (const { shard } of a.shards()) {
          const key = `lease.${kind.name}.${shard}`
          const entry = yield* Effect.promise(() => leases.get(key))
          if (entry === null) throw new Error(`no lease ${key}`)
          yield* Effect.promise(() => leases.update(key, entry.value, entry.revision))
        }
        const stopping = Date.now()
        yield* Scope.close(aScope, Exit.void)
        const stopMs = Date.now() - stopping
        // Left to expire, A's four shards would come to B after 30 s.
        yield* waitUntil(
          "B holding all eight shards",
          Effect.sync(() => b.shards().length === 8),
          10_000
        )
        console.log(`A stopped in ${stopMs} ms; B held all shards ${Date.now() - stopping} ms after A's stop began`)
        expect(stopMs).toBeLessThan(3_000)
      }).pipe(Effect.provide(Layer.merge(natsAdmin("actors-stop"), sqlLayer(url)))),
    60_000
  )

  it.scopedLive(
    "an instance stopped while NATS is out of reach stops at once, its leases left to expire (not a timeout per shard)",
    () =>
      Effect.gen(function* () {
        const serverScope = yield* Scope.make()
        const nats = yield* startPrivateNats.pipe(Scope.extend(serverScope))
        const kind = counterKind(unique("k"), 8)
        const runtimeScope = yield* Scope.make()
        const runtime = yield* startRuntime(
          url,
          [kind],
          { instanceId: unique("alone"), leaseTtl: "10 seconds" },
          natsLayer({ servers: nats.url, creds: nats.adminCreds, name: "actors-stop-outage" })
        ).pipe(Scope.extend(runtimeScope))
        yield* waitUntil(
          "the instance holding all eight shards",
          Effect.sync(() => runtime.shards().length === 8),
          20_000
        )
        // The server goes; a probe connection of its own sees it gone (the runtime's sees the same socket close).
        const probe = yield* Layer.build(natsLayer({ servers: nats.url, creds: nats.adminCreds, name: "probe" }))
        const { nc } = Context.get(probe, Nats)
        const gone = Effect.promise(async () => {
          for await (const status of nc.status()) if (status.type === "disconnect") return
        })
        yield* Effect.all([gone, Scope.close(serverScope, Exit.void)], { concurrency: "unbounded" })
        const stopping = Date.now()
        yield* Scope.close(runtimeScope, Exit.void)
        const stopMs = Date.now() - stopping
        console.log(`with NATS gone, the instance stopped in ${stopMs} ms`)
        // One after another, each shard's give-back waited out its second, and each connection's drain its 3 s.
        expect(stopMs).toBeLessThan(1_500)
      }),
    60_000
  )
})
