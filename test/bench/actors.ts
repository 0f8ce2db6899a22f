/**
 * Benchmark: commands through the actor runtime (JetStream consumer, Postgres transaction with inbox,
 * state, outbox and fence, ack after commit, outbox relay) against raw JetStream publish + consume
 * + ack, on this machine in the same run. Run: `node --import tsx test/bench/actors.ts [N]`.
 * Prints the figures and rewrites the "Actor runtime" section of docs/benchmarks.md.
 */
import { cpus } from "node:os"
import { SqlClient } from "@effect/sql"
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream"
import { Actor, ActorRuntime } from "@sam/actors"
import { Nats } from "@sam/bus"
import { Context, Effect, Layer } from "effect"
import { type CounterHooks, counterKind, createCounterTable, Increment } from "../src/CounterActor.js"
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
    const { js } = yield* Nats
    const runtimes = yield* Effect.forEach(
      Array.from({ length: instances }, (_, n) => n),
      (n) =>
        Layer.build(ActorRuntime.layer([kind], { instanceId: `bench-${n}`, leaseTtl: "5 seconds", onApplied })).pipe(
          Effect.map((context) => Context.get(context, ActorRuntime.ActorRuntime))
        )
    )
    while (runtimes.reduce((sum, r) => sum + r.shards().length, 0) < kind.shards) yield* Effect.sleep(50)
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
          sentAt.set(envelope.id, Date.now())
          indexOf.set(envelope.id, i)
          return js.publish(Actor.subjectOf(kind, id), JSON.stringify(envelope), { msgID: envelope.id })
        },
        done
      )
    )
    const elapsed = Date.now() - started
    const cpuAfter = cpuByKind(OWN)
    const cpu = cpuPer(cpuBefore, cpuAfter, count).filter(({ us }) => us > 0)
    return { ...figures(count, elapsed, latencies), cpu }
  }).pipe(Effect.scoped)

const line = (name: string, f: Figures) =>
  `| ${name} | ${f.perSecond.toFixed(0)} | ${f.p50.toFixed(0)} | ${f.p99.toFixed(0)} |`

/** The run of median throughput, with the slowest and fastest throughput of the runs. */
const median = (runs: ReadonlyArray<Figures>) => {
  const sorted = [...runs].sort((a, b) => a.perSecond - b.perSecond)
  return { ...sorted[Math.floor(sorted.length / 2)]!, slowest: sorted[0]!.perSecond, fastest: sorted.at(-1)!.perSecond }
}

const main = Effect.gen(function* () {
  yield* createCounterTable(yield* SqlClient.SqlClient)
  yield* Effect.log(`warming up`)
  yield* raw(500, false)
  yield* runtime(500, false, 1)
  yield* runtime(500, false, 1, GROUPED)
  // The burst that compares the runtime with raw JetStream runs ROUNDS times each, alternating, and each side's
  // median counts: one burst of each varied by a quarter from run to run, and the first of a process more.
  const raws: Array<Figures> = []
  const groupeds: Array<Figures> = []
  for (let round = 0; round < ROUNDS; round++) {
    raws.push(yield* raw(N, false))
    // `SAM_BENCH_CPU_PROFILE=<file>`: this process's CPU profile of the last grouped burst
    const grouped = runtime(N, false, 1, GROUPED)
    groupeds.push(yield* round === ROUNDS - 1 ? cpuProfiled(grouped) : grouped)
  }
  const rawBurst = median(raws)
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
    `(${cpus().length} cores, shared with other work; figures vary run to run), nats-server 2.9, embedded Postgres 17.`,
    `Commands to ${ENTITIES} entities over 8 shards, up to ${IN_FLIGHT} publishes in flight (burst) or one at a time.`,
    "Latency is from publish to the ack after the Postgres commit (runtime) or to consumption (raw).",
    "Commands of a shard that wait together share a transaction (group commit): one inbox insert for all of them,",
    "each one's state read and write and outbox event, one fence check, one COMMIT. The test kind either loads and",
    "saves each command's entity on its own, or, as a kind may (`loadMany`, `saveMany`, `carry`), reads the group's",
    "entities in one statement and writes their saves in one, and commits a group in one statement (ADR 0056): its",
    "states read and its commands handled first, then the inbox claims, saves, outbox rows and fence check together.",
    `After a warm-up, the raw burst and the runtime's grouped burst run ${ROUNDS} times each, alternating; their rows`,
    "are the runs of median throughput (the first burst of a process runs slower: its code is not optimized yet).",
    "",
    table,
    "",
    `Raw bursts ${range(rawBurst)} commands/s, the runtime's grouped bursts ${range(rtGrouped)}.`,
    `Throughput ratio runtime/raw (1 instance, burst): ${ratio(rtBurst)} with a load and a save per command, ${ratio(rtGrouped)} with a group's loads and saves together (medians).`,
    `CPU time per command in the burst, by process: ${cpu(rtBurst)} (a load and a save per command); ${cpu(rtGrouped)} (together, the median run).`,
    ""
  ].join("\n")
  yield* writeSection("Actor runtime", section)
})

await runOnStack(() => main)
