import { describe, expect, it } from "@effect/vitest"
import { Actor } from "@sam/actors"
import { Nats, Publish } from "@sam/bus"
import { Effect, Layer, type Redacted } from "effect"
import { beforeAll } from "vitest"
import { actorsDatabase, counters, entityIds, eventCount, publishLoad, waitUntil } from "../../src/ActorsHarness.js"
import { startRuntime } from "../../src/ActorsInProcess.js"
import { counterKind, Increment } from "../../src/CounterActor.js"
import { natsAdmin, sqlLayer, unique } from "../../src/Env.js"

let url: Redacted.Redacted<string>
beforeAll(async () => {
  url = await actorsDatabase()
})
const env = () => Layer.merge(natsAdmin("actors-load"), sqlLayer(url))

/** Every entity applied seq 1…n once each, in order. */
const allApplied = (kindName: string, entities: ReadonlyArray<string>, n: number) =>
  counters(kindName).pipe(
    Effect.map((rows) => entities.every((id) => rows.get(id)?.count === n && rows.get(id)?.lastSeq === n))
  )

/** A runtime of its own for `kinds`, counting the commands it applied, once it holds all their shards. */
const countingRuntime = (kinds: ReadonlyArray<Actor.AnyActorKind>) =>
  Effect.gen(function* () {
    let applied = 0
    const runtime = yield* startRuntime(url, kinds, {
      instanceId: unique("c"),
      leaseTtl: "4 seconds",
      mailboxCapacity: 64,
      onApplied: (a) => {
        if (a.outcome === "applied") applied++
      }
    })
    const shards = kinds.reduce((sum, kind) => sum + kind.shards, 0)
    yield* waitUntil(
      "shards leased",
      Effect.sync(() => runtime.shards().length === shards),
      20_000
    )
    return { applied: () => applied }
  })

describe("actor runtime under load", () => {
  it.scopedLive(
    "10,000 commands over 500 entities with 2 instances: in order, each applied once, each event published once",
    () =>
      Effect.gen(function* () {
        const kind = counterKind(unique("k"), 8)
        const options = { leaseTtl: "4 seconds", mailboxCapacity: 32 } as const
        const a = yield* startRuntime(url, [kind], { ...options, instanceId: unique("a") })
        const b = yield* startRuntime(url, [kind], { ...options, instanceId: unique("b") })
        yield* waitUntil(
          "both instances share the shards",
          Effect.sync(() => a.shards().length === 4 && b.shards().length === 4),
          20_000
        )
        const entities = entityIds(500)
        const started = Date.now()
        yield* publishLoad({ kind, entities, perEntity: 20, publishers: 8 })
        yield* waitUntil("all 10,000 applied", allApplied(kind.name, entities, 20), 90_000, 250)
        const seconds = (Date.now() - started) / 1000
        console.log(
          `10,000 commands through 2 instances in ${seconds.toFixed(1)} s (${(10_000 / seconds).toFixed(0)}/s)`
        )
        const rows = yield* counters(kind.name)
        expect([...rows.values()].reduce((sum, row) => sum + row.count, 0)).toBe(10_000)
        expect([...rows.values()].every((row) => row.violations === 0)).toBe(true)
        yield* waitUntil("10,000 events relayed", eventCount(kind.name).pipe(Effect.map((n) => n >= 10_000)), 30_000)
        expect(yield* eventCount(kind.name)).toBe(10_000)
      }).pipe(Effect.provide(env())),
    150_000
  )

  it.scopedLive(
    "an entity's commands that wait together start from the state the one before saved (carry): in order, once each, fewer loads",
    () =>
      Effect.gen(function* () {
        let loads = 0
        const kind = counterKind(unique("k"), 2, { carry: true, onLoad: () => void loads++ })
        const { applied } = yield* countingRuntime([kind])
        const entities = entityIds(10)
        // each command stored twice without a message id: the copies wait in the same groups and only the
        // inbox can tell them apart, so a carried state must skip them as a fresh load would
        yield* publishLoad({ kind, entities, perEntity: 60, publishers: 4, twice: "no-msg-id" })
        yield* waitUntil("all applied", allApplied(kind.name, entities, 60), 60_000, 200)
        const rows = yield* counters(kind.name)
        expect([...rows.values()].every((row) => row.count === 60 && row.violations === 0)).toBe(true)
        expect(applied()).toBe(600)
        expect(loads).toBeLessThan(applied())
        console.log(`carry: ${applied()} commands applied with ${loads} loads`)
      }).pipe(Effect.provide(env()))
  )

  it.scopedLive(
    "a kind that reads a group's entities in one statement and writes their saves in one: in order, once each, with or without carry",
    () =>
      Effect.gen(function* () {
        const reads = { carried: [] as Array<number>, reloaded: [] as Array<number> }
        const writes = { carried: [] as Array<number>, reloaded: [] as Array<number> }
        let loads = 0
        // with carry an entity's later commands start from the state held for saving; without it, the held
        // saves are written before the load that follows them
        const carried = counterKind(unique("k"), 2, {
          batched: true,
          carry: true,
          onLoadMany: (n) => void reads.carried.push(n),
          onSaveMany: (n) => void writes.carried.push(n)
        })
        const reloaded = counterKind(unique("k"), 2, {
          batched: true,
          onLoad: () => void loads++,
          onLoadMany: (n) => void reads.reloaded.push(n),
          onSaveMany: (n) => void writes.reloaded.push(n)
        })
        const { applied } = yield* countingRuntime([carried, reloaded])
        const entities = entityIds(40)
        // each command stored twice without a message id: only the inbox tells the copies apart
        yield* Effect.all(
          [carried, reloaded].map((kind) =>
            publishLoad({ kind, entities, perEntity: 30, publishers: 4, twice: "no-msg-id" })
          ),
          { concurrency: "unbounded" }
        )
        for (const kind of [carried, reloaded]) {
          yield* waitUntil(`all applied (${kind.name})`, allApplied(kind.name, entities, 30), 60_000, 200)
          const rows = yield* counters(kind.name)
          expect([...rows.values()].every((row) => row.count === 30 && row.violations === 0)).toBe(true)
        }
        expect(applied()).toBe(2 * 40 * 30)
        // the group reads and writes were used: several entities in one statement, several saves in one
        for (const seen of [reads.carried, reads.reloaded, writes.carried, writes.reloaded])
          expect(Math.max(...seen)).toBeGreaterThan(1)
        console.log(
          `loadMany: ${reads.carried.length + reads.reloaded.length} reads of up to ${Math.max(...reads.carried, ...reads.reloaded)} entities; ` +
            `saveMany: ${writes.carried.length + writes.reloaded.length} writes of up to ${Math.max(...writes.carried, ...writes.reloaded)} saves; ` +
            `${loads} loads of one entity without carry, for ${applied() / 2} commands`
        )
      }).pipe(Effect.provide(env()))
  )

  it.scopedLive("commands that wait longer than ack_wait behind a slow one are not delivered again", () =>
    Effect.gen(function* () {
      const kind = counterKind(unique("k"), 1)
      let applied = 0
      let duplicates = 0
      const runtime = yield* startRuntime(url, [kind], {
        instanceId: unique("w"),
        leaseTtl: "4 seconds",
        // 3 s: the ack extender's rounds (a third of it) keep a second's slack for a loaded event loop
        ackWait: "3 seconds",
        // one command a transaction: the ones behind wait in the mailbox, about 7 s for the last
        groupMax: 1,
        onApplied: (a) => {
          if (a.outcome === "applied") applied++
          else duplicates++
        }
      })
      yield* waitUntil(
        "shard leased",
        Effect.sync(() => runtime.shards().length === 1),
        20_000
      )
      yield* Effect.forEach(
        Array.from({ length: 8 }, (_, i) => i + 1),
        (seq) => Publish.publish(Actor.subjectOf(kind, "e1"), Increment.make({ seq, slowMs: 1000 })),
        { discard: true }
      )
      yield* waitUntil("all applied", allApplied(kind.name, ["e1"], 8), 30_000, 100)
      const { jsm } = yield* Nats
      const consumers = yield* Effect.promise(async () => {
        const out: Array<{ name: string; redelivered: number }> = []
        for await (const c of jsm.consumers.list("SAM_CMD"))
          if (c.name.includes(kind.name)) out.push({ name: c.name, redelivered: c.num_redelivered })
        return out
      })
      // Without the deadline pushed back, the server delivers the waiting ones again after 3 s.
      expect(consumers.map((c) => c.redelivered)).toEqual([0])
      expect(applied).toBe(8)
      expect(duplicates).toBe(0)
    }).pipe(Effect.provide(env()))
  )

  it.scopedLive("commands published twice, and deliveries whose ack is withheld, apply once", () =>
    Effect.gen(function* () {
      const kind = counterKind(unique("k"), 4)
      let duplicates = 0
      const runtime = yield* startRuntime(url, [kind], {
        instanceId: unique("r"),
        leaseTtl: "4 seconds",
        ackWait: "1 second",
        // every first delivery stays unacknowledged: the server redelivers all of them
        withholdAck: (_seq, deliveryCount) => deliveryCount === 1,
        onApplied: (applied) => {
          if (applied.outcome === "duplicate") duplicates++
        }
      })
      yield* waitUntil(
        "shards leased",
        Effect.sync(() => runtime.shards().length === 4),
        20_000
      )
      const entities = entityIds(50)
      // the same envelope twice with its Nats-Msg-Id (the stream drops the copy) ...
      yield* publishLoad({ kind, entities, perEntity: 4, publishers: 2, twice: "same-msg-id" })
      // ... and twice without it, so the stream stores both and only the inbox can tell
      yield* publishLoad({ kind, entities, perEntity: 4, publishers: 2, twice: "no-msg-id", startSeq: 5 })
      yield* waitUntil("all applied", allApplied(kind.name, entities, 8), 60_000, 200)
      // 200 stored copies plus a redelivery of each of the 600 stored messages are all duplicates
      yield* waitUntil(
        "every redelivery seen",
        Effect.sync(() => duplicates >= 200 + 600),
        30_000,
        200
      )
      const rows = yield* counters(kind.name)
      expect([...rows.values()].every((row) => row.count === 8 && row.violations === 0)).toBe(true)
      expect(yield* eventCount(kind.name)).toBeLessThanOrEqual(400)
      yield* waitUntil("400 events", eventCount(kind.name).pipe(Effect.map((n) => n === 400)), 20_000)
    }).pipe(Effect.provide(env()))
  )
})
