import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Actor, ActorStatus, Actors } from "@sam/actors"
import { encode, Nats, Subjects } from "@sam/bus"
import { Effect, Layer, type Redacted } from "effect"
import { beforeAll } from "vitest"
import { actorsDatabase, counters, waitUntil } from "../../src/ActorsHarness.js"
import { startRuntime } from "../../src/ActorsInProcess.js"
import { counterKind, Increment } from "../../src/CounterActor.js"
import { natsAdmin, sqlLayer, unique } from "../../src/Env.js"

let url: Redacted.Redacted<string>
beforeAll(async () => {
  url = await actorsDatabase()
})
const env = () => Layer.merge(natsAdmin("actors-wrong-shard"), sqlLayer(url))

describe("actor runtime: a command on the wrong shard", () => {
  it.scopedLive("is dead-lettered as wrong-shard, not applied, and shown by sam actors", () =>
    Effect.gen(function* () {
      const kind = counterKind(unique("k"), 4)
      const runtime = yield* startRuntime(url, [kind], {
        instanceId: unique("inst"),
        leaseTtl: "3 seconds",
        maxAttempts: 3,
        retryBase: "20 millis"
      })
      yield* waitUntil(
        "all shards leased",
        Effect.sync(() => runtime.shards().length === 4),
        10_000
      )
      // A sender that believes the kind has another shard count: its subject names another shard.
      const home = Subjects.shardOf("e1", kind.shards)
      const stray = Increment.make({ seq: 1 })
      const { js } = yield* Nats
      yield* Effect.promise(() =>
        js.publish(Subjects.command(kind.name, (home + 1) % kind.shards, "e1"), encode(stray), { msgID: stray.id })
      )
      const sql = yield* SqlClient.SqlClient
      const letters = () =>
        sql<{ reason: string; messageId: string | null; entityId: string | null; detail: string }>`
          SELECT reason, message_id, entity_id, detail FROM actor_dead_letters WHERE kind = ${kind.name}`
      yield* waitUntil("dead-lettered", letters().pipe(Effect.map((rows) => rows.length === 1)), 10_000)
      const [letter] = yield* letters()
      expect(letter).toMatchObject({ reason: "wrong-shard", messageId: stray.id, entityId: "e1" })
      expect(letter?.detail).toContain(`shard ${home} of 4`)
      expect((yield* counters(kind.name)).get("e1")).toBeUndefined()

      // The same entity on its own shard is applied as usual.
      const applied = yield* Actors.ask(kind, "e1", Increment.make({ seq: 1 }))
      expect(applied).toMatchObject({ outcome: "applied", reply: 1 })
      expect(Actor.subjectOf(kind, "e1")).toBe(Subjects.command(kind.name, home, "e1"))

      const status = yield* ActorStatus.status()
      expect(status.deadLetters.find((d) => d.kind === kind.name)).toEqual({
        kind: kind.name,
        count: 1,
        reasons: [{ reason: "wrong-shard", count: 1 }]
      })
      expect(ActorStatus.render(status)).toContain(`${kind.name} 1 (wrong-shard 1)`)
    }).pipe(Effect.provide(env()))
  )
})
