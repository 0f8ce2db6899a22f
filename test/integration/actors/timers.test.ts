import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Actors } from "@sam/actors"
import { Effect, Layer, type Redacted } from "effect"
import { afterEach, beforeAll } from "vitest"
import { actorsDatabase, counters, startWorker, stopWorker, type Worker, waitUntil } from "../../src/ActorsHarness.js"
import { Increment, Remind } from "../../src/CounterActor.js"
import { natsAdmin, sqlLayer, unique } from "../../src/Env.js"

const SHARDS = 4
const TTL_MS = 3_000

let url: Redacted.Redacted<string>
beforeAll(async () => {
  url = await actorsDatabase()
})
const env = () => Layer.merge(natsAdmin("actors-timers"), sqlLayer(url))

const workers: Array<Worker> = []
afterEach(async () => {
  await Promise.all(workers.splice(0).map(stopWorker))
})

const start = (kindName: string) =>
  Effect.promise(() =>
    startWorker({ name: unique("w"), kind: kindName, shards: SHARDS, databaseUrl: url, leaseTtlMs: TTL_MS })
  ).pipe(Effect.tap((worker) => Effect.sync(() => workers.push(worker))))

describe("durable timers", () => {
  it.scopedLive(
    "a timer set 2 s ahead fires exactly once across a restart of all instances",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const kindName = unique("k")
        const kind = { name: kindName, shards: SHARDS }
        const first = [yield* start(kindName), yield* start(kindName)]
        yield* waitUntil(
          "shards leased",
          Effect.sync(() => first.reduce((sum, w) => sum + w.owned().size, 0) === SHARDS),
          30_000
        )
        const setAt = Date.now()
        yield* Actors.send(kind, "e1", Remind.make({ afterMs: 2_000 }))
        const timerRows = sql<{ n: string }>`SELECT count(*) AS n FROM actor_timers WHERE kind = ${kindName}`
        yield* waitUntil("timer stored", timerRows.pipe(Effect.map((rows) => Number(rows[0]?.n) === 1)), 10_000, 20)
        // every instance dies before the timer is due
        for (const worker of first) worker.signal("SIGKILL")
        yield* Effect.promise(() => Promise.all(first.map((worker) => worker.exited)))
        expect(Date.now() - setAt).toBeLessThan(2_000)
        yield* start(kindName)
        yield* start(kindName)
        yield* waitUntil(
          "the timer fired",
          counters(kindName).pipe(Effect.map((rows) => rows.get("e1")?.fired === 1)),
          30_000
        )
        const firedAfter = Date.now() - setAt
        expect(firedAfter).toBeGreaterThanOrEqual(2_000)
        // a later command to the same entity is applied after the timer's: nothing else is pending for it
        yield* Actors.send(kind, "e1", Increment.make({ seq: 1 }))
        yield* waitUntil(
          "a later command applied",
          counters(kindName).pipe(Effect.map((rows) => rows.get("e1")?.count === 1)),
          20_000
        )
        expect((yield* counters(kindName)).get("e1")).toMatchObject({ fired: 1, count: 1 })
        expect(Number((yield* timerRows)[0]?.n)).toBe(0)
      }).pipe(Effect.provide(env())),
    90_000
  )
})
