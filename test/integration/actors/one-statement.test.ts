import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Actor, type ActorRuntime, Actors } from "@sam/actors"
import { Nats, Subjects } from "@sam/bus"
import { Effect, Layer, type Redacted } from "effect"
import { beforeAll } from "vitest"
import { actorsDatabase, counters, entityIds, eventCount, publishLoad, waitUntil } from "../../src/ActorsHarness.js"
import { startRuntime } from "../../src/ActorsInProcess.js"
import { counterKind, Increment, Remind } from "../../src/CounterActor.js"
import { natsAdmin, sqlLayer, unique } from "../../src/Env.js"

/**
 * A kind that commits a group in one statement (ADR 0056): its states read and its commands handled outside any
 * transaction, then the inbox claims, saves, outbox rows, timers and the fence check in one statement that commits
 * whole or not at all.
 */
let url: Redacted.Redacted<string>
beforeAll(async () => {
  url = await actorsDatabase()
})
const env = () => Layer.merge(natsAdmin("actors-one-statement"), sqlLayer(url))

const inOne = (name: string, shards: number) => counterKind(name, shards, { batched: true, carry: true, inOne: true })

/** A runtime of its own for `kind`, with what it applied, once it holds all the kind's shards. */
const runtimeFor = (kind: ReturnType<typeof inOne>, events: Array<ActorRuntime.RuntimeEvent> = []) =>
  Effect.gen(function* () {
    const applied: Array<ActorRuntime.Applied> = []
    const runtime = yield* startRuntime(url, [kind], {
      instanceId: unique("one"),
      leaseTtl: "3 seconds",
      onApplied: (a) => void applied.push(a),
      onEvent: (event) => void events.push(event)
    })
    yield* waitUntil(
      "all shards leased",
      Effect.sync(() => runtime.shards().length === kind.shards),
      20_000
    )
    return applied
  })

describe("actor runtime: a group committed in one statement", () => {
  it.scopedLive(
    "every command applied once and in order, each copy of a command stored twice a repeat, each event published once",
    () =>
      Effect.gen(function* () {
        const kind = inOne(unique("k"), 2)
        const applied = yield* runtimeFor(kind)
        const entities = entityIds(40)
        // each command stored twice without a message id: only the inbox tells the copies apart, whether they
        // wait in one group (the group goes to a transaction) or in two (the second's statement finds its id
        // taken, fails whole, and its group runs again in a transaction)
        yield* publishLoad({ kind, entities, perEntity: 30, publishers: 4, twice: "no-msg-id" })
        yield* waitUntil(
          "all applied",
          counters(kind.name).pipe(
            Effect.map((rows) => entities.every((id) => rows.get(id)?.count === 30 && rows.get(id)?.lastSeq === 30))
          ),
          60_000,
          200
        )
        const rows = yield* counters(kind.name)
        expect([...rows.values()].every((row) => row.count === 30 && row.violations === 0)).toBe(true)
        const outcomes = (outcome: string, committedIn?: string) =>
          applied.filter((a) => a.outcome === outcome && (committedIn === undefined || a.committedIn === committedIn))
            .length
        yield* waitUntil(
          "every copy answered",
          Effect.sync(() => applied.length === 2 * 40 * 30),
          30_000
        )
        expect(outcomes("applied")).toBe(40 * 30)
        expect(outcomes("duplicate")).toBe(40 * 30)
        // most commands went in one statement; the repeats made some groups go to a transaction
        expect(outcomes("applied", "statement")).toBeGreaterThan(0)
        expect(outcomes("duplicate", "transaction")).toBe(40 * 30)
        yield* waitUntil("every event published", eventCount(kind.name).pipe(Effect.map((n) => n >= 40 * 30)), 20_000)
        expect(yield* eventCount(kind.name)).toBe(40 * 30)
        console.log(
          `one statement: ${outcomes("applied", "statement")} of ${40 * 30} commands applied in one statement, ` +
            `${outcomes("applied", "transaction")} in a transaction`
        )
      }).pipe(Effect.provide(env())),
    120_000
  )

  it.scopedLive(
    "commands one at a time commit in one statement, a repeat in a transaction; a timer set so is kept and fires once",
    () =>
      Effect.gen(function* () {
        const kind = inOne(unique("k"), 1)
        const applied = yield* runtimeFor(kind)
        for (let seq = 1; seq <= 5; seq++)
          expect(yield* Actors.ask(kind, "e1", Increment.make({ seq }))).toMatchObject({
            outcome: "applied",
            reply: seq
          })
        expect(yield* Actors.ask(kind, "e1", Remind.make({ afterMs: 300 }))).toMatchObject({ outcome: "applied" })
        expect(applied.map((a) => a.committedIn)).toEqual(Array.from({ length: 6 }, () => "statement"))
        // An applied command stored and delivered again (past JetStream's duplicate window: no message id): its
        // statement finds its inbox row taken and fails whole; run again in a transaction, it is a repeat.
        const again = Increment.make({ seq: 6 })
        expect(yield* Actors.ask(kind, "e1", again)).toMatchObject({ outcome: "applied", reply: 6 })
        const { js } = yield* Nats
        yield* Effect.promise(() => js.publish(Actor.subjectOf(kind, "e1"), JSON.stringify(again)))
        yield* waitUntil(
          "the repeat answered",
          Effect.sync(() => applied.filter((a) => a.envelope.id === again.id).length === 2),
          10_000
        )
        expect(applied.filter((a) => a.envelope.id === again.id).map((a) => [a.outcome, a.committedIn])).toEqual([
          ["applied", "statement"],
          ["duplicate", "transaction"]
        ])
        yield* waitUntil(
          "the timer fired",
          counters(kind.name).pipe(Effect.map((rows) => rows.get("e1")?.fired === 1)),
          10_000
        )
        const sql = yield* SqlClient.SqlClient
        const timers = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM actor_timers WHERE kind = ${kind.name}`
        expect(timers[0]!.n).toBe(0)
        expect((yield* counters(kind.name)).get("e1")).toMatchObject({ count: 6, lastSeq: 6, violations: 0, fired: 1 })
      }).pipe(Effect.provide(env()))
  )

  it.scopedLive(
    "a statement whose shard was taken meanwhile writes nothing and is refused; the command applies once the shard is held again",
    () =>
      Effect.gen(function* () {
        const kind = inOne(unique("k"), 1)
        const events: Array<ActorRuntime.RuntimeEvent> = []
        const applied = yield* runtimeFor(kind, events)
        expect(yield* Actors.ask(kind, "e1", Increment.make({ seq: 1 }))).toMatchObject({ reply: 1 })
        // Another owner took the shard in Postgres (as after a takeover): this owner's next statement is refused.
        const sql = yield* SqlClient.SqlClient
        const shard = Subjects.shardOf("e1", kind.shards)
        yield* sql`UPDATE actor_shard_fences SET epoch = epoch + 1 WHERE kind = ${kind.name} AND shard = ${shard}`
        const second = Increment.make({ seq: 2 })
        yield* Actors.send(kind, "e1", second)
        yield* waitUntil(
          "the commit refused by the fence",
          Effect.sync(() => events.some((e) => e._tag === "CommitRefused" && e.messageId === second.id)),
          10_000
        )
        // The shard is taken again and the command comes again: applied then, not found in the inbox as a repeat (the
        // refused statement wrote nothing, its inbox row neither).
        yield* waitUntil(
          "applied after the shard is taken again",
          Effect.sync(() => applied.some((a) => a.envelope.id === second.id)),
          20_000
        )
        expect(applied.filter((a) => a.envelope.id === second.id).map((a) => a.outcome)).toEqual(["applied"])
        const inbox = yield* sql<{
          n: number
        }>`SELECT count(*)::int AS n FROM actor_inbox WHERE message_id = ${second.id}`
        expect(inbox[0]!.n).toBe(1)
        expect((yield* counters(kind.name)).get("e1")).toMatchObject({ count: 2, lastSeq: 2, violations: 0 })
      }).pipe(Effect.provide(env())),
    60_000
  )
})

describe("actor runtime: a state kept from one group to the next", () => {
  it.scopedLive(
    "an entity's next group starts from what this process committed, not from a load; not once the shard's epoch moved on",
    () =>
      Effect.gen(function* () {
        const loads: Array<string> = []
        const kind = counterKind(unique("k"), 1, {
          batched: true,
          carry: true,
          inOne: true,
          keep: true,
          onLoad: (id) => void loads.push(id)
        })
        const events: Array<ActorRuntime.RuntimeEvent> = []
        const applied = yield* runtimeFor(kind, events)
        for (let seq = 1; seq <= 5; seq++)
          expect(yield* Actors.ask(kind, "e1", Increment.make({ seq }))).toMatchObject({
            outcome: "applied",
            reply: seq
          })
        // one load, for the first: each later command came in a group of its own and started from the last commit
        expect(loads).toEqual(["e1"])
        expect(applied.map((a) => a.committedIn)).toEqual(Array.from({ length: 5 }, () => "statement"))
        // Another owner took the shard and wrote e1 (as after a takeover). This owner learns it from a command to
        // another entity, whose commit is refused; once it holds the shard again (a new epoch), e1 is loaded: what
        // it kept of e1 was committed at the old epoch.
        const sql = yield* SqlClient.SqlClient
        const shard = Subjects.shardOf("e1", kind.shards)
        yield* sql`UPDATE actor_shard_fences SET epoch = epoch + 1 WHERE kind = ${kind.name} AND shard = ${shard}`
        yield* sql`UPDATE test_counters SET count = 100 WHERE kind = ${kind.name} AND id = 'e1'`
        const other = Increment.make({ seq: 1 })
        yield* Actors.send(kind, "e2", other)
        yield* waitUntil(
          "the other entity's command applied once the shard is held again",
          Effect.sync(() => applied.some((a) => a.envelope.id === other.id)),
          20_000
        )
        expect(events.some((e) => e._tag === "CommitRefused" && e.messageId === other.id)).toBe(true)
        expect(yield* Actors.ask(kind, "e1", Increment.make({ seq: 6 }))).toMatchObject({
          outcome: "applied",
          reply: 101
        })
        expect(loads.filter((id) => id === "e1")).toHaveLength(2)
        expect((yield* counters(kind.name)).get("e1")).toMatchObject({ count: 101, lastSeq: 6, violations: 0 })
      }).pipe(Effect.provide(env())),
    60_000
  )
})
