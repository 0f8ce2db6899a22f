/**
 * Benchmark: commands through the actor runtime (JetStream consumer, Postgres transaction with inbox,
 * state, outbox and fence, ack after commit, outbox relay) against raw JetStream publish + consume
 * + ack, and against the design's floor (the same work in plain JavaScript, `floor`), on this machine in the same
 * run. Run: `node --import tsx test/bench/actors.ts [N]`.
 * Prints the figures and rewrites the "Actor runtime" section of docs/benchmarks.md.
 */
import { cpus } from "node:os"
import { SqlClient } from "@effect/sql"
import { AckPolicy, DeliverPolicy, type JsMsg } from "@nats-io/jetstream"
import { Actor, ActorRuntime } from "@sam/actors"
import { Nats, registry, Subjects } from "@sam/bus"
import { Context, Effect, Layer, Redacted } from "effect"
import Pg from "pg"
import {
  type Counter,
  type CounterHooks,
  counterKind,
  createCounterTable,
  Increment,
  Incremented
} from "../src/CounterActor.js"
import { cpuProfiled, runOnStack, writeSection } from "./BenchReport.js"
import { cpuByKind, cpuPer } from "./ProcessCpu.js"

const N = Number(process.argv[2] ?? 5_000)
const SEQUENTIAL = 300
const ENTITIES = 500
const IN_FLIGHT = 256
const ROUNDS = 3

/**
 * A kind that reads a shard's entities in one statement and writes their saves in one (issue 12), and commits a
 * group in one statement (ADR 0056).
 */
const GROUPED: CounterHooks = { batched: true, carry: true, inOne: true }
const OWN = "this process (runtime and publisher)"

interface Figures {
  readonly perSecond: number
  readonly p50: number
  readonly p99: number
  /** CPU time per command, µs, by process, the largest first */
  readonly cpu?: ReadonlyArray<{ readonly kind: string; readonly us: number }>
}
const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
const figures = (count: number, elapsedMs: number, latencies: Array<number>): Figures => {
  latencies.sort((a, b) => a - b)
  return { perSecond: (count / elapsedMs) * 1000, p50: percentile(latencies, 50), p99: percentile(latencies, 99) }
}

/** Publish `count` messages with at most IN_FLIGHT unacknowledged publishes, or one at a time when `sequential`. */
const drive = async (
  count: number,
  sequential: boolean,
  send: (i: number) => Promise<unknown>,
  done: Map<number, () => void>
) => {
  const finished: Array<Promise<void>> = []
  let next = 0
  const worker = async () => {
    while (next < count) {
      const i = next++
      const applied = new Promise<void>((resolve) => done.set(i, resolve))
      await send(i)
      if (sequential) await applied
      finished.push(applied)
    }
  }
  await Promise.all(Array.from({ length: sequential ? 1 : IN_FLIGHT }, worker))
  await Promise.all(finished)
}

/** What a run records of each command, by its envelope's id (sent, index) and by its index (done). */
interface Tracking {
  readonly sentAt: Map<string, number>
  readonly indexOf: Map<string, number>
  readonly done: Map<number, () => void>
  readonly latencies: Array<number>
}

/**
 * Publish `count` increments over ENTITIES entities of `kind` (`drive`), each entity's in order; the run's figures,
 * with this process's and the servers' CPU time per command.
 */
const increments = (
  kind: Parameters<typeof Actor.subjectOf>[0],
  count: number,
  sequential: boolean,
  tracking: Tracking
) =>
  Effect.gen(function* () {
    const { js } = yield* Nats
    const seqOf = new Map<string, number>()
    const cpuBefore = cpuByKind(OWN)
    const started = Date.now()
    yield* Effect.promise(() =>
      drive(
        count,
        sequential,
        (i) => {
          const id = `e${i % ENTITIES}`
          const seq = (seqOf.get(id) ?? 0) + 1
          seqOf.set(id, seq)
          const envelope = Increment.make({ seq })
          tracking.sentAt.set(envelope.id, Date.now())
          tracking.indexOf.set(envelope.id, i)
          return js.publish(Actor.subjectOf(kind, id), JSON.stringify(envelope), { msgID: envelope.id })
        },
        tracking.done
      )
    )
    const elapsed = Date.now() - started
    const cpu = cpuPer(cpuBefore, cpuByKind(OWN), count).filter(({ us }) => us > 0)
    return { ...figures(count, elapsed, tracking.latencies), cpu }
  })

const raw = (count: number, sequential: boolean) =>
  Effect.gen(function* () {
    const { js, jsm } = yield* Nats
    const kind = `rawb${Math.random().toString(36).slice(2, 8)}`
    const filter = `sam.cmd.${kind}.>`
    yield* Effect.promise(() =>
      jsm.consumers.add("SAM_CMD", {
        durable_name: kind,
        filter_subject: filter,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All
      })
    )
    const consumer = yield* Effect.promise(() => js.consumers.get("SAM_CMD", kind))
    const sentAt = new Map<number, number>()
    const latencies: Array<number> = []
    const done = new Map<number, () => void>()
    const messages = yield* Effect.promise(() =>
      consumer.consume({
        max_messages: 256,
        callback: (msg) => {
          msg.ack()
          const i = Number(msg.subject.slice(msg.subject.lastIndexOf(".") + 2))
          latencies.push(Date.now() - (sentAt.get(i) ?? Date.now()))
          done.get(i)?.()
        }
      })
    )
    const started = Date.now()
    yield* Effect.promise(() =>
      drive(
        count,
        sequential,
        (i) => {
          sentAt.set(i, Date.now())
          return js.publish(`sam.cmd.${kind}.0.e${i}`, JSON.stringify(Increment.make({ seq: 1 })), {
            msgID: `${kind}-${i}`
          })
        },
        done
      )
    )
    const elapsed = Date.now() - started
    yield* Effect.promise(() => messages.close().catch(() => undefined))
    return figures(count, elapsed, latencies)
  })

const runtime = (count: number, sequential: boolean, instances: number, hooks: CounterHooks = {}) =>
  Effect.gen(function* () {
    const kind = counterKind(`bench${Math.random().toString(36).slice(2, 8)}`, 8, hooks)
    const sentAt = new Map<string, number>()
    const indexOf = new Map<string, number>()
    const latencies: Array<number> = []
    const done = new Map<number, () => void>()
    const onApplied = (applied: ActorRuntime.Applied) => {
      const i = indexOf.get(applied.envelope.id)
      if (i === undefined || applied.outcome !== "applied") return
      latencies.push(applied.at - (sentAt.get(applied.envelope.id) ?? applied.at))
      done.get(i)?.()
    }
    const runtimes = yield* Effect.forEach(
      Array.from({ length: instances }, (_, n) => n),
      (n) =>
        Layer.build(ActorRuntime.layer([kind], { instanceId: `bench-${n}`, leaseTtl: "5 seconds", onApplied })).pipe(
          Effect.map((context) => Context.get(context, ActorRuntime.ActorRuntime))
        )
    )
    while (runtimes.reduce((sum, r) => sum + r.shards().length, 0) < kind.shards) yield* Effect.sleep(50)
    return yield* increments(kind, count, sequential, { sentAt, indexOf, done, latencies })
  }).pipe(Effect.scoped)

/**
 * The least the design asks of an actor runtime, in plain JavaScript (nats.js and pg, no Effect, no runtime): the
 * same consumers (one per shard), the same tables and statements as the runtime's grouped burst in one statement
 * (ADR 0056): per batch of a shard, its entities' states read in one statement; the inbox claims, the saves, the
 * outbox rows and the fence check in one; the events published at once and marked sent in one; then each command
 * acknowledged. No leases, retries, timers, dead letters, spans or failure handling. What the runtime adds to it is
 * its own cost; what this costs is the design's on this machine.
 */
const floor = (count: number, databaseUrl: Redacted.Redacted<string>) =>
  Effect.gen(function* () {
    const { js, jsm, streams } = yield* Nats
    const kind = counterKind(`floor${Math.random().toString(36).slice(2, 8)}`, 8)
    const pool = new Pg.Pool({ connectionString: Redacted.value(databaseUrl), max: 24 })
    yield* Effect.addFinalizer(() => Effect.promise(() => pool.end()))
    const EPOCH = 1
    yield* Effect.promise(() =>
      pool.query(
        `INSERT INTO actor_shard_fences (kind, shard, epoch, owner) SELECT $1, s, $2, 'floor' FROM generate_series(0, $3 - 1) AS s`,
        [kind.name, EPOCH, kind.shards]
      )
    )
    const commands = registry(Increment)
    const sentAt = new Map<string, number>()
    const latencies: Array<number> = []
    const done = new Map<number, () => void>()
    const indexOf = new Map<string, number>()
    const fresh: Counter = { count: 0, lastSeq: 0, violations: 0, fired: 0 }
    const apply = async (shard: number, batch: Array<{ msg: JsMsg; id: string }>) => {
      const decoded = batch.map(({ msg, id }) => {
        const result = commands.decode(msg.data)
        if (result._tag !== "Ok") throw new Error(`floor: ${result.malformed.message}`)
        return { msg, id, envelope: result.envelope }
      })
      const ids = [...new Set(decoded.map((d) => d.id))]
      const found = await pool.query({
        name: "floor-load",
        text: "SELECT id, count, last_seq, violations, fired FROM test_counters WHERE kind = $1 AND id = ANY($2::text[])",
        values: [kind.name, ids]
      })
      const states = new Map<string, Counter>(ids.map((id) => [id, fresh]))
      for (const row of found.rows)
        states.set(row.id, { count: row.count, lastSeq: row.last_seq, violations: row.violations, fired: row.fired })
      const outbox = decoded.map(({ id, envelope }) => {
        const state = states.get(id)!
        const next = {
          ...state,
          count: state.count + 1,
          lastSeq: envelope.body.seq,
          violations: state.violations + (envelope.body.seq === state.lastSeq + 1 ? 0 : 1)
        }
        states.set(id, next)
        const event = Incremented.make({ seq: envelope.body.seq, count: next.count })
        return {
          messageId: event.id,
          subject: Subjects.event("test", kind.name, id, event.type),
          payload: JSON.stringify(event)
        }
      })
      const saved = [...states.entries()]
      await pool.query({
        name: "floor-commit",
        text: `WITH claimed AS (
            INSERT INTO actor_inbox (message_id, kind, entity_id, type, correlation_id)
            SELECT m, $1, e, $2, m FROM unnest($3::text[], $4::text[]) AS u(m, e)
            ON CONFLICT (message_id) DO NOTHING RETURNING 1),
          saved AS (
            INSERT INTO test_counters (kind, id, count, last_seq, violations, fired)
            SELECT $1, * FROM unnest($5::text[], $6::int[], $7::int[], $8::int[], $9::int[])
            ON CONFLICT (kind, id) DO UPDATE SET count = EXCLUDED.count, last_seq = EXCLUDED.last_seq,
              violations = EXCLUDED.violations, fired = EXCLUDED.fired),
          outbox AS (
            INSERT INTO actor_outbox (message_id, subject, payload, traceparent)
            SELECT message_id, subject, payload, NULL FROM unnest($10::text[], $11::text[], $12::text[])
              WITH ORDINALITY AS o(message_id, subject, payload, n)
            ORDER BY n ON CONFLICT (message_id) DO NOTHING)
          SELECT sam_commit_check((SELECT count(*) FROM claimed), $13,
            (SELECT epoch FROM actor_shard_fences WHERE kind = $1 AND shard = $14 FOR SHARE), $15)`,
        values: [
          kind.name,
          Increment.type,
          decoded.map((d) => d.envelope.id),
          decoded.map((d) => d.id),
          saved.map(([id]) => id),
          saved.map(([, s]) => s.count),
          saved.map(([, s]) => s.lastSeq),
          saved.map(([, s]) => s.violations),
          saved.map(([, s]) => s.fired),
          outbox.map((o) => o.messageId),
          outbox.map((o) => o.subject),
          outbox.map((o) => o.payload),
          decoded.length,
          shard,
          EPOCH
        ]
      })
      await streams.publish(
        outbox.map((o) => ({ subject: o.subject, data: new TextEncoder().encode(o.payload), msgId: o.messageId }))
      )
      await pool.query({
        name: "floor-sent",
        text: `UPDATE actor_outbox SET sent_at = now() WHERE message_id = ANY($1::text[]) AND sent_at IS NULL
          AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL`,
        values: [outbox.map((o) => o.messageId)]
      })
      const now = Date.now()
      for (const { msg, envelope } of decoded) {
        msg.ack()
        latencies.push(now - (sentAt.get(envelope.id) ?? now))
        const i = indexOf.get(envelope.id)
        if (i !== undefined) done.get(i)?.()
      }
    }
    const consumers = yield* Effect.forEach(
      Array.from({ length: kind.shards }, (_, shard) => shard),
      (shard) =>
        Effect.promise(async () => {
          const name = `${kind.name}-${shard}`
          await jsm.consumers.add("SAM_CMD", {
            durable_name: name,
            filter_subject: Subjects.commandShard(kind.name, shard),
            ack_policy: AckPolicy.Explicit,
            deliver_policy: DeliverPolicy.All,
            max_ack_pending: 4096
          })
          const consumer = await js.consumers.get("SAM_CMD", name)
          // one batch of a shard at a time: what arrives meanwhile waits for the next
          let waiting: Array<{ msg: JsMsg; id: string }> = []
          let busy = false
          const next = () => {
            if (busy || waiting.length === 0) return
            busy = true
            const batch = waiting
            waiting = []
            apply(shard, batch).then(
              () => {
                busy = false
                next()
              },
              (error) => console.error(error)
            )
          }
          return consumer.consume({
            max_messages: 256,
            callback: (msg) => {
              waiting.push({ msg, id: msg.subject.slice(msg.subject.lastIndexOf(".") + 1) })
              next()
            }
          })
        })
    )
    const result = yield* increments(kind, count, false, { sentAt, indexOf, done, latencies })
    yield* Effect.promise(() => Promise.all(consumers.map((c) => c.close().catch(() => undefined))))
    return result
  }).pipe(Effect.scoped)

const line = (name: string, f: Figures) =>
  `| ${name} | ${f.perSecond.toFixed(0)} | ${f.p50.toFixed(0)} | ${f.p99.toFixed(0)} |`

/** The run of median throughput, with the slowest and fastest throughput of the runs. */
const median = (runs: ReadonlyArray<Figures>) => {
  const sorted = [...runs].sort((a, b) => a.perSecond - b.perSecond)
  return { ...sorted[Math.floor(sorted.length / 2)]!, slowest: sorted[0]!.perSecond, fastest: sorted.at(-1)!.perSecond }
}

const main = (databaseUrl: Redacted.Redacted<string>) =>
  Effect.gen(function* () {
    yield* createCounterTable(yield* SqlClient.SqlClient)
    yield* Effect.log(`warming up`)
    yield* raw(500, false)
    yield* runtime(500, false, 1)
    yield* runtime(500, false, 1, GROUPED)
    // The burst that compares the runtime with raw JetStream runs ROUNDS times each, alternating, and each side's
    // median counts: one burst of each varied by a quarter from run to run, and the first of a process more.
    const raws: Array<Figures> = []
    const groupeds: Array<Figures> = []
    const floors: Array<Figures> = []
    yield* floor(500, databaseUrl)
    for (let round = 0; round < ROUNDS; round++) {
      raws.push(yield* raw(N, false))
      floors.push(yield* floor(N, databaseUrl))
      // `SAM_BENCH_CPU_PROFILE=<file>`: this process's CPU profile of the last grouped burst
      const grouped = runtime(N, false, 1, GROUPED)
      groupeds.push(yield* round === ROUNDS - 1 ? cpuProfiled(grouped) : grouped)
    }
    const rawBurst = median(raws)
    const floorBurst = median(floors)
    const rtGrouped = median(groupeds)
    const rtBurst = yield* runtime(N, false, 1)
    const rtGrouped2 = yield* runtime(N, false, 2, GROUPED)
    const rawSeq = yield* raw(SEQUENTIAL, true)
    const rtSeq = yield* runtime(SEQUENTIAL, true, 1)
    const rtSeqInOne = yield* runtime(SEQUENTIAL, true, 1, GROUPED)
    const table = [
      "| path | commands/s | p50 ms | p99 ms |",
      "|---|---:|---:|---:|",
      line(`raw JetStream publish → consume → ack, ${N} in a burst (median of ${ROUNDS})`, rawBurst),
      line(
        `the design's floor: the grouped burst's consumers, statements, publishes and acks in plain JavaScript, no runtime (median of ${ROUNDS})`,
        floorBurst
      ),
      line(`actor runtime, 1 instance, ${N} in a burst, a load and a save per command`, rtBurst),
      line(
        `actor runtime, 1 instance, ${N} in a burst, a group's loads and saves together (median of ${ROUNDS})`,
        rtGrouped
      ),
      line(`actor runtime, 2 instances, ${N} in a burst, a group's loads and saves together`, rtGrouped2),
      line(`raw JetStream, ${SEQUENTIAL} one at a time`, rawSeq),
      line(`actor runtime, ${SEQUENTIAL} one at a time, in a transaction each`, rtSeq),
      line(`actor runtime, ${SEQUENTIAL} one at a time, in one statement each (after its read)`, rtSeqInOne)
    ].join("\n")
    const ratio = (f: Figures) => (f.perSecond / rawBurst.perSecond).toFixed(3)
    const range = (f: ReturnType<typeof median>) => `${f.slowest.toFixed(0)}–${f.fastest.toFixed(0)}`
    const cpu = (f: Figures) => (f.cpu ?? []).map(({ kind, us }) => `${kind} ${us.toFixed(0)} µs`).join(", ")
    const section = [
      "## Actor runtime",
      "",
      `Measured ${new Date().toISOString().slice(0, 16)} UTC by \`node --import tsx test/bench/actors.ts ${N}\` on this machine`,
      `(${cpus().length} cores, shared with other work; figures vary run to run), Node.js ${process.version}, nats-server 2.9, embedded Postgres 17.`,
      `Commands to ${ENTITIES} entities over 8 shards, up to ${IN_FLIGHT} publishes in flight (burst) or one at a time.`,
      "Latency is from publish to the ack after the Postgres commit (runtime) or to consumption (raw).",
      "Commands of a shard that wait together share a transaction (group commit): one inbox insert for all of them,",
      "each one's state read and write and outbox event, one fence check, one COMMIT. The test kind either loads and",
      "saves each command's entity on its own, or, as a kind may (`loadMany`, `saveMany`, `carry`), reads the group's",
      "entities in one statement and writes their saves in one, and commits a group in one statement (ADR 0056): its",
      "states read and its commands handled first, then the inbox claims, saves, outbox rows and fence check together.",
      "The design's floor does the grouped burst's work in plain JavaScript, without the runtime: the same consumers (one",
      "per shard), per batch of a shard its entities' states read in one statement, then the inbox claims, saves, outbox",
      "rows and fence check in one, the events published and marked sent, each command acknowledged (no leases, retries,",
      "spans, timers or failure handling). What the runtime costs beyond it is the runtime's; what it costs is the design's.",
      `After a warm-up, the raw burst, the floor and the runtime's grouped burst run ${ROUNDS} times each, alternating; their`,
      "rows are the runs of median throughput (the first burst of a process runs slower: its code is not optimized yet).",
      "",
      table,
      "",
      `Raw bursts ${range(rawBurst)} commands/s, the runtime's grouped bursts ${range(rtGrouped)}.`,
      `Throughput ratio runtime/raw (1 instance, burst): ${ratio(rtBurst)} with a load and a save per command, ${ratio(rtGrouped)} with a group's loads and saves together (medians).`,
      `The design's floor/raw: ${ratio(floorBurst)} (its bursts ${range(floorBurst)}); the runtime's grouped burst is ${(rtGrouped.perSecond / floorBurst.perSecond).toFixed(2)}× its floor.`,
      `CPU time per command in the burst, by process: ${cpu(rtBurst)} (a load and a save per command); ${cpu(rtGrouped)} (together, the median run); ${cpu(floorBurst)} (the floor, its median run).`,
      ""
    ].join("\n")
    yield* writeSection("Actor runtime", section)
  })

await runOnStack((stack) => main(stack.databaseUrl))
