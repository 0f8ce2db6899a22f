import { describe, expect, it } from "@effect/vitest"
import type { ActorRuntime } from "@sam/actors"
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
const env = () => Layer.merge(natsAdmin("actors-membership"), sqlLayer(url))

describe("actor runtime: shard shares", () => {
  it.scopedLive(
    "two instances that renew often keep their even shares: a member renewing while another lists the members counts once",
    () =>
      Effect.gen(function* () {
        const kind = counterKind(unique("k"), 8)
        const given: Array<string> = []
        // Renewing every 15 ms, each instance's membership is re-put while the other lists the members.
        const options = (name: string): ActorRuntime.RuntimeOptions => ({
          instanceId: unique(name),
          leaseTtl: "4 seconds",
          renewEvery: "15 millis",
          onEvent: (event) => {
            if (event._tag === "Released" || event._tag === "Lost") given.push(`${name} ${event._tag} ${event.shard}`)
          }
        })
        const a = yield* startRuntime(url, [kind], options("a"))
        const b = yield* startRuntime(url, [kind], options("b"))
        yield* waitUntil(
          "both instances share the shards",
          Effect.sync(() => a.shards().length === 4 && b.shards().length === 4),
          20_000
        )
        // The rebalancing that got there released A's surplus; from here on the shares are even.
        given.length = 0
        const seen = new Set<string>()
        const until = Date.now() + 4_000
        while (Date.now() < until) {
          seen.add(`${a.shards().length}/${b.shards().length}`)
          yield* Effect.sleep("10 millis")
        }
        expect(given).toEqual([])
        expect([...seen]).toEqual(["4/4"])
      }).pipe(Effect.provide(env())),
    60_000
  )
})
