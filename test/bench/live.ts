/**
 * Benchmark: the live path, whole (issue 12). Real vm-agents and demo agents (host runtime), the
 * control plane (report ingress, session actors, Postgres, the outbox relay), the gateway and its
 * WebSocket feed, with one feed client per session.
 *
 * - Throughput: S conversation sessions each run a prompt of K `say` lines at once; events/s from the
 *   first prompt to the last `turn-ended` at the feed clients, against raw core NATS publish →
 *   subscribe of as many payloads of the same size in the same run. Twice: the first burst of the
 *   stack runs code V8 has not compiled yet, and is reported apart; the second is the figure.
 * - Latency: the S sessions each stream 50 events/s (`stamp`, `sleep 20`) for a few seconds; the time
 *   from the agent's write (the stamp) to the feed client's receipt. Measured on its second run, as the
 *   burst: the first runs paths the bursts did not (an event alone at each hop) in code V8 has not compiled yet.
 *   Every turn starts at once, so the stamps written in a run's first and last half second (while the turns start
 *   and end) are also reported apart from those between.
 *
 * Run: `node --import tsx test/bench/live.ts [sessions] [lines]`. Rewrites the "Live path" section of
 * docs/benchmarks.md. `SAM_BENCH_CPU_PROFILE=<file>` profiles this process over the run at 10 events/s a
 * session, `SAM_BENCH_CHILD_PROFILES=<dir>` the vm-agents over the measured run at 50 (BenchReport.ts).
 */
import { cpus } from "node:os"
import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { Actors, ControlPlane } from "@sam/actors"
import { Domain, makeId, Nats, Otlp, Subjects } from "@sam/bus"
import { Auth, Gateway } from "@sam/gateway"
import { FeedClient } from "@sam/gateway/client"
import { Effect, Fiber, Logger, LogLevel } from "effect"
import pg from "pg"
import { makeRepo } from "../src/Repo.js"
import { startTestStack } from "../src/TestStack.js"
import {
  childProfiled,
  compiledAgents,
  controlPlaneOn,
  cpuProfiled,
  runBench,
  scratch,
  writeSection
} from "./BenchReport.js"
import { measureFloor } from "./live-floor.js"
import { cpuByKind, cpuPer } from "./ProcessCpu.js"

/** This process in the per-process CPU figures. */
const OWN = "control plane, gateway, clients"

const SESSIONS = Number(process.argv[2] ?? 20)
/** the vm-agents and demo agents as `./sam` runs them, compiled */
const HOW = compiledAgents()
const LINES = Number(process.argv[3] ?? 250)
const LATENCY_SECONDS = 4
const { ControlProtocol: C } = Domain
const now = () => performance.timeOrigin + performance.now()
const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN

/**
 * What this process (control plane, gateway, feed clients) does per event: SQL statements by their
 * first words, NATS publishes and requests by their subject's first tokens. Counted in the paced run.
 */
const ops = { on: false, sql: new Map<string, number>(), nats: new Map<string, number>() }
const bump = (map: Map<string, number>, key: string) => void map.set(key, (map.get(key) ?? 0) + 1)
/** Count them from now on; the function returned stops it (the raw baseline runs without the counting's calls). */
const countOps = (nc: object) => {
  const query = pg.Client.prototype.query as (...args: Array<unknown>) => unknown
  pg.Client.prototype.query = function (this: pg.Client, ...args: Array<unknown>) {
    if (ops.on) {
      const text = typeof args[0] === "string" ? args[0] : String((args[0] as { text?: unknown })?.text ?? "")
      // its first words only: a group's statement is kilobytes long, and this runs in the measured process
      bump(ops.sql, text.slice(0, 200).replace(/\s+/g, " ").trim().split(" ").slice(0, 3).join(" "))
    }
    return query.apply(this, args)
  } as never
  const proto = Object.getPrototypeOf(nc) as Record<string, (...args: Array<unknown>) => unknown>
  const originals = (["publish", "request"] as const).map((method) => {
    const original = proto[method]!
    proto[method] = function (this: unknown, subject: unknown, ...rest: Array<unknown>) {
      if (ops.on) bump(ops.nats, `${method} ${String(subject).split(".").slice(0, 3).join(".")}`)
      return original.call(this, subject, ...rest)
    }
    return [method, original] as const
  })
  return () => {
    pg.Client.prototype.query = query as never
    for (const [method, original] of originals) proto[method] = original
  }
}
/** The most frequent of `map`'s counts, each divided by `per`, and their sum. */
const tally = (map: Map<string, number>, per: number, digits: number) => {
  const total = [...map.values()].reduce((a, b) => a + b, 0)
  const top = [...map]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 8)
    .map(([k, n]) => `\`${k}\` ${(n / per).toFixed(digits)}`)
    .join(", ")
  return `${(total / per).toFixed(digits)} (${top})`
}

/** the vm-agents' profiles around the measured run at 50 events/s a session, when asked for (before they start) */
const childrenProfiled = childProfiled()

// 20 sessions on at most 3 nodes of one user.
process.env.SAM_NODE_MAX_WORKSPACES = String(Math.ceil(SESSIONS / 3) + 1)

interface Follower {
  readonly sessionId: string
  readonly client: FeedClient
  /** events received, and the seqs seen (to check order and that none is missing or repeated) */
  count: number
  lastSeq: number
  outOfOrder: number
  turnEnds: number
  readonly stamps: Array<number>
  /** when each of `stamps` was written (the agent's clock, which is this machine's) */
  readonly written: Array<number>
}

/**
 * Where a stamped event is seen on its way, for the split by hop: the time this process received each message
 * carrying it (a core NATS subscription to the node's reports, the ingress's forwards to the session actors and
 * the actors' published events), and its feed client's receipt. Keyed by the stamp's own text.
 */
const hopsSeen = {
  on: false,
  report: new Map<string, number>(),
  forward: new Map<string, number>(),
  /** its session command's transaction began, and was committed and acknowledged (the runtime's `onApplied`) */
  commitStart: new Map<string, number>(),
  committed: new Map<string, number>(),
  event: new Map<string, number>(),
  client: new Map<string, number>()
}
const STAMPS = /stamp (\d+\.\d+)/g
const hopDecoder = new TextDecoder()
const seeStamps = (where: Map<string, number>, data: Uint8Array) => {
  if (!hopsSeen.on) return
  const at = now()
  for (const match of hopDecoder.decode(data).matchAll(STAMPS)) if (!where.has(match[1]!)) where.set(match[1]!, at)
}

const program = Effect.gen(function* () {
  // The design's floor first, on a stack of its own that is stopped before this one starts.
  const floor = yield* Effect.promise(() => measureFloor(SESSIONS))
  yield* writeSection("Live path: the design's floor", floor.section)
  const running = yield* Effect.acquireRelease(Effect.promise(startTestStack), (r) => Effect.promise(r.close))
  const stack = running.stack
  // Where the control plane's time goes: commands applied per kind and how long each took.
  const applied = new Map<string, { n: number; ms: number }>()
  const onApplied = (a: { kind: string; startedAt: number; at: number; envelope: { body: unknown } }) => {
    const entry = applied.get(a.kind) ?? { n: 0, ms: 0 }
    entry.n++
    entry.ms += a.at - a.startedAt
    applied.set(a.kind, entry)
    if (hopsSeen.on && a.kind === "session") {
      // Date.now() against performance's clock: the same epoch, to the millisecond
      for (const match of JSON.stringify(a.envelope.body).matchAll(STAMPS)) {
        if (!hopsSeen.commitStart.has(match[1]!)) hopsSeen.commitStart.set(match[1]!, a.startedAt)
        if (!hopsSeen.committed.has(match[1]!)) hopsSeen.committed.set(match[1]!, a.at)
      }
    }
  }
  const env = controlPlaneOn(stack, { controlPlane: { runtime: { onApplied } } })
  return yield* Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const { url } = yield* Gateway.start({ host: "127.0.0.1", port: 0, natsUrl: stack.natsUrl })
    const userId = makeId("user")
    const projectId = makeId("proj")
    const repo = makeRepo(join(yield* scratch("sam-bench-live-"), "repo"))
    yield* sql`INSERT INTO users (id, display_name) VALUES (${userId}, 'bench')`
    yield* sql`INSERT INTO projects (id, owner_id, name, repo_url) VALUES (${projectId}, ${userId}, 'bench', ${repo})`
    yield* sql`INSERT INTO project_members (project_id, user_id, role) VALUES (${projectId}, ${userId}, 'owner')`
    const { token } = yield* Effect.flatMap(Auth, (auth) => auth.createToken(userId, { name: "bench" })).pipe(
      Effect.provide(Auth.Default)
    )

    // S conversations, each waiting for a follow-up with its agent running.
    const taskIds = yield* Effect.forEach(
      Array.from({ length: SESSIONS }),
      () =>
        Effect.gen(function* () {
          const taskId = makeId("task")
          yield* Actors.ask(
            ControlPlane.TaskRef,
            taskId,
            C.TaskSubmit.make({
              taskId,
              projectId: projectId as never,
              userId: userId as never,
              prompt: "say ready",
              mode: "conversation"
            })
          )
          return taskId
        }),
      { concurrency: "unbounded" }
    )
    const deadline = Date.now() + 180_000
    let sessions: ReadonlyArray<{ sessionId: string; lastSeq: number }> = []
    while (Date.now() < deadline) {
      sessions = yield* sql<{ sessionId: string; lastSeq: number }>`
        SELECT s.id AS session_id, s.last_seq::int AS last_seq FROM tasks t JOIN sessions s ON s.id = t.session_id
        WHERE t.id IN ${sql.in(taskIds)} AND t.execution_step = 'awaiting_followup'`
      if (sessions.length === SESSIONS) break
      yield* Effect.sleep(200)
    }
    if (sessions.length < SESSIONS) return yield* Effect.dieMessage(`only ${sessions.length} sessions got ready`)

    /** wakes `waitTurns` when a turn ends at a client (this process polling every few ms would cost what it measures) */
    let turnEnded = () => {}
    const followers: Array<Follower> = sessions.map(({ sessionId, lastSeq }) => {
      const follower: Follower = {
        sessionId,
        count: 0,
        lastSeq,
        outOfOrder: 0,
        turnEnds: 0,
        stamps: [],
        written: [],
        client: new FeedClient({
          baseUrl: url,
          token,
          sessions: [{ sessionId, afterSeq: lastSeq }],
          onStatus: (status) => {
            if (status.state === "closed") process.stderr.write(`feed client: closed ${status.code} ${status.reason}\n`)
          },
          onFrame: (frame) => {
            if (frame.type === "error") process.stderr.write(`feed error: ${JSON.stringify(frame).slice(0, 300)}\n`)
            if (frame.type !== "session.event") return
            const at = now()
            follower.count++
            if (frame.seq !== follower.lastSeq + 1) follower.outOfOrder++
            follower.lastSeq = frame.seq
            if (frame.event.type === "turn-ended") {
              follower.turnEnds++
              turnEnded()
            }
            const text = frame.event.type === "text" ? String(frame.event.text ?? "") : ""
            if (text.startsWith("stamp ")) {
              follower.stamps.push(at - Number(text.slice(6)))
              follower.written.push(Number(text.slice(6)))
              if (hopsSeen.on) hopsSeen.client.set(text.slice(6), at)
            }
          }
        })
      }
      return follower
    })
    // Every client subscribed before anything is sent.
    yield* Effect.sleep(1_000)
    // What the stack costs with every session open and nothing happening, in % of one core by kind of process
    // (a process that ended meanwhile takes its CPU time with it: such a kind counts 0, not less).
    // And what this process asks of Postgres and NATS meanwhile, per second.
    const { nc } = yield* Nats
    const uncount = countOps(nc)
    ops.on = true
    const idleBefore = cpuByKind(OWN)
    const idleStarted = now()
    yield* Effect.sleep(3_000)
    const idleSeconds = (now() - idleStarted) / 1000
    const idle = cpuPer(idleBefore, cpuByKind(OWN), idleSeconds).map(({ kind, us }) => ({
      kind,
      percent: Math.max(0, us / 10_000)
    }))
    ops.on = false
    uncount()
    const idleOps = { sql: tally(ops.sql, idleSeconds, 1), nats: tally(ops.nats, idleSeconds, 1) }
    const waitTurns = (n: number, timeoutMs: number) =>
      Effect.gen(function* () {
        const until = Date.now() + timeoutMs
        let reported = Date.now()
        while (followers.some((f) => f.turnEnds < n)) {
          if (Date.now() > until) return yield* Effect.dieMessage(`turn ${n} did not end everywhere in time`)
          if (Date.now() - reported > 5_000) {
            reported = Date.now()
            const [stored] = yield* sql<{ n: number }>`
              SELECT count(*)::int AS n FROM session_events WHERE session_id IN ${sql.in(followers.map((f) => f.sessionId))}`
            process.stderr.write(
              `… turn ${n}: ${followers.reduce((sum, f) => sum + f.count, 0)} events at the clients, ${stored?.n} stored, ${followers.filter((f) => f.turnEnds >= n).length} turns ended; commands ${[...applied].map(([k, v]) => `${k} ${v.n} (${(v.ms / v.n).toFixed(1)} ms)`).join(", ")}\n`
            )
          }
          yield* Effect.async<void>((resume) => {
            turnEnded = () => resume(Effect.void)
          }).pipe(Effect.timeout("1 second"), Effect.ignore)
        }
      })
    /** The same prompt to every session, or each session's own (`text` of its index). */
    const prompt = (text: string | ((index: number) => string)) =>
      Effect.forEach(
        followers,
        (f, index) =>
          Actors.ask(
            ControlPlane.SessionRef,
            f.sessionId,
            C.SessionPromptCommand.make({
              sessionId: f.sessionId as never,
              prompt: typeof text === "string" ? text : text(index)
            })
          ),
        { concurrency: "unbounded", discard: true }
      )

    // Throughput: a burst of LINES `say` lines per session, twice. The first runs code of every process that
    // nothing has run yet (V8 interprets it, then compiles it while the burst goes on); the second is what a
    // stack that has streamed before does, and the one the target and the ratio are read from.
    const script = Array.from({ length: LINES }, (_, i) => `say chunk ${i} ${"x".repeat(60)}`).join("\n")
    let turn = 0
    const burst = Effect.gen(function* () {
      const before = followers.reduce((sum, f) => sum + f.count, 0)
      const cpuBefore = cpuByKind(OWN)
      const started = now()
      yield* prompt(script)
      turn++
      yield* waitTurns(turn, 300_000)
      const elapsed = now() - started
      const events = followers.reduce((sum, f) => sum + f.count, 0) - before
      return { events, elapsed, perSecond: (events / elapsed) * 1000, cpu: cpuPer(cpuBefore, cpuByKind(OWN), events) }
    })
    const cold = yield* burst
    const { events, elapsed, perSecond, cpu: burstCpu } = yield* burst

    // The raw baseline: the same number of payloads of the same size over core NATS, publish → subscribe.
    const payload = new TextEncoder().encode(
      JSON.stringify({ type: "text", text: `chunk 0 ${"x".repeat(60)}` }).padEnd(400, " ")
    )
    const subject = Subjects.pty("node_bench", "raw", "out")
    let received = 0
    const sub = nc.subscribe(subject, { callback: () => void received++ })
    yield* Effect.promise(() => nc.flush())
    const rawStart = now()
    for (let i = 0; i < events; i++) nc.publish(subject, payload)
    while (received < events) yield* Effect.sleep(1)
    const rawElapsed = now() - rawStart
    sub.unsubscribe()
    const raw = (events / rawElapsed) * 1000

    // Latency at a rate per session, with the backlog of each stage sampled every 250 ms: reports the
    // ingress has not yet handled, session commands not yet applied, outbox rows not yet published (a
    // consumer's pending and delivered-but-unacknowledged messages); what this process did per event and
    // the CPU time of each kind of process.
    const { jsm } = yield* Nats
    countOps(nc)
    /** The stamped events' time from one place to the next, p50 and p99, in ms. */
    const hopSplit = () => {
      const places = [
        ["the agent's write", undefined],
        ["its report on NATS", hopsSeen.report],
        ["the ingress's forward", hopsSeen.forward],
        ["its transaction's start", hopsSeen.commitStart],
        ["the session actor's event", hopsSeen.event],
        ["the feed client", hopsSeen.client]
      ] as const
      const parts: Array<string> = []
      for (let i = 1; i < places.length; i++) {
        const [fromName, from] = places[i - 1]!
        const [toName, to] = places[i]!
        const spans: Array<number> = []
        for (const [stamp, at] of to!) {
          const start = from === undefined ? Number(stamp) : from.get(stamp)
          if (start !== undefined && hopsSeen.client.has(stamp)) spans.push(at - start)
        }
        spans.sort((a, b) => a - b)
        parts.push(
          `${fromName} → ${toName} p50 ${percentile(spans, 50).toFixed(1)}, p99 ${percentile(spans, 99).toFixed(1)} (${spans.length})`
        )
      }
      const transactions = [...hopsSeen.committed]
        .flatMap(([stamp, at]) => {
          const start = hopsSeen.commitStart.get(stamp)
          return start === undefined ? [] : [at - start]
        })
        .sort((a, b) => a - b)
      parts.push(
        `(the transaction itself, from its start to its commit and acks, p50 ${percentile(transactions, 50).toFixed(1)}, p99 ${percentile(transactions, 99).toFixed(1)})`
      )
      return parts.join("; ")
    }
    const pacedRun = (perSecond: number, hops = false) =>
      Effect.gen(function* () {
        for (const map of Object.values(hopsSeen)) if (map instanceof Map) map.clear()
        const watches = hops
          ? [
              nc.subscribe("sam.agent.*.rpt.>", { callback: (_, m) => seeStamps(hopsSeen.report, m.data) }),
              nc.subscribe("sam.cmd.session.>", { callback: (_, m) => seeStamps(hopsSeen.forward, m.data) }),
              nc.subscribe(Subjects.projectEvents(projectId), {
                callback: (_, m) => seeStamps(hopsSeen.event, m.data)
              })
            ]
          : []
        if (hops) yield* Effect.promise(() => nc.flush())
        hopsSeen.on = hops
        const backlog = { reports: 0, commands: 0, outbox: 0, samples: 0 }
        const pending = (stream: string, match: (name: string) => boolean) =>
          Effect.promise(async () => {
            let sum = 0
            for await (const info of jsm.consumers.list(stream))
              if (match(info.name)) sum += info.num_pending + info.num_ack_pending
            return sum
          })
        const probe = yield* Effect.gen(function* () {
          const reports = yield* pending("SAM_AGENT", (name) => name.startsWith("control-report-ingress"))
          const commands = yield* pending("SAM_CMD", (name) => name.startsWith("actor-session-"))
          const [row] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM actor_outbox WHERE sent_at IS NULL`
          backlog.reports = Math.max(backlog.reports, reports)
          backlog.commands = Math.max(backlog.commands, commands)
          backlog.outbox = Math.max(backlog.outbox, row?.n ?? 0)
          backlog.samples++
        }).pipe(Effect.zipRight(Effect.sleep(250)), Effect.forever, Effect.fork)
        for (const f of followers) {
          f.stamps.length = 0
          f.written.length = 0
        }
        ops.sql.clear()
        ops.nats.clear()
        ops.on = true
        const cpuBefore = cpuByKind(OWN)
        const before = followers.reduce((sum, f) => sum + f.count, 0)
        const gap = Math.round(1000 / perSecond)
        const script = Array.from({ length: LATENCY_SECONDS * perSecond }, () => `stamp\nsleep ${gap}`).join("\n")
        // Split by hop, the sessions' stamps are spread over the gap (session i starts i/S of it later): at once, every
        // stamp of a round would wait for the others' at each hop. And they begin a second after the prompts, whose own
        // work (S prompts at once, their turns' starts) would otherwise be what the first stamps wait for.
        yield* prompt(hops ? (i) => `sleep ${1000 + Math.round((i * gap) / SESSIONS)}\n${script}` : script)
        turn++
        yield* waitTurns(turn, 120_000)
        ops.on = false
        hopsSeen.on = false
        for (const watch of watches) watch.unsubscribe()
        const cpuAfter = cpuByKind(OWN)
        yield* Fiber.interrupt(probe)
        const stamps = followers.flatMap((f) => f.stamps).sort((a, b) => a - b)
        // The turns' start and end (every session's prompt at once, then every turn's end) against the stream between
        // them: the stamps written in the first and the last half second, and the others.
        const first = Math.min(...followers.flatMap((f) => f.written))
        const last = Math.max(...followers.flatMap((f) => f.written))
        const between = followers
          .flatMap((f) => f.stamps.filter((_, i) => f.written[i]! >= first + 500 && f.written[i]! <= last - 500))
          .sort((a, b) => a - b)
        const edges = followers
          .flatMap((f) => f.stamps.filter((_, i) => f.written[i]! < first + 500 || f.written[i]! > last - 500))
          .sort((a, b) => a - b)
        const delivered = followers.reduce((sum, f) => sum + f.count, 0) - before
        const perEvent = (map: Map<string, number>) => tally(map, delivered, 2)
        const cpu = cpuPer(cpuBefore, cpuAfter, delivered)
        const cpuTotal = cpu.reduce((sum, c) => sum + c.us, 0)
        const rate = SESSIONS * perSecond
        const text = [
          `Latency, each of the ${SESSIONS} sessions streaming ${perSecond} events/s for ${LATENCY_SECONDS} s (${stamps.length} stamped events, ${rate} events/s in all${hops ? ", the sessions' stamps spread evenly over each second rather than at once, from a second after the prompts" : ""}):`,
          `from the agent's write to the feed client, p50 ${percentile(stamps, 50).toFixed(1)} ms, p99 ${percentile(stamps, 99).toFixed(1)} ms,`,
          `max ${(stamps.at(-1) ?? Number.NaN).toFixed(1)} ms.`,
          ...(hops
            ? []
            : [
                `Of them, the ${edges.length} written in the first or the last half second (while the turns start and end): p50 ${percentile(edges, 50).toFixed(1)} ms, p99 ${percentile(edges, 99).toFixed(1)} ms;`,
                `the ${between.length} between: p50 ${percentile(between, 50).toFixed(1)} ms, p99 ${percentile(between, 99).toFixed(1)} ms.`
              ]),
          `The largest backlog seen meanwhile (${backlog.samples} samples, 250 ms apart): ${backlog.reports} reports not yet handled by the ingress,`,
          `${backlog.commands} session commands not yet applied, ${backlog.outbox} outbox rows waiting for the relay.`,
          `Per event delivered (${delivered} events), in the process of the control plane, gateway and clients:`,
          `SQL statements ${perEvent(ops.sql)};`,
          `NATS publishes and requests ${perEvent(ops.nats)}.`,
          `CPU time per event from the first stamp to the last turn's end, by process: ${cpu.map((c) => `${c.kind} ${c.us.toFixed(0)} µs`).join(", ")};`,
          `${cpuTotal.toFixed(0)} µs in all: ${rate} events/s take ${((cpuTotal * rate) / 10_000).toFixed(0)}% of one core (this machine has ${cpus().length * 100}%).`,
          ...(hops
            ? [
                "By hop, ms, as this process saw each stamped event go by (core NATS subscriptions of its own to the reports,",
                `the forwards and the events; count in brackets): ${hopSplit()}.`
              ]
            : []),
          ""
        ].join("\n")
        return { text, p50: percentile(stamps, 50), cpuPerEvent: cpuTotal }
      })
    const warmUp = yield* pacedRun(50)
    const target = yield* childrenProfiled(pacedRun(50))
    // `SAM_BENCH_CPU_PROFILE=<file>`: this process's CPU profile of the run at 10 events/s a session
    const light = yield* cpuProfiled(pacedRun(10))
    // The path's own latency with the machine nearly idle, split by hop (the subscriptions that split it are this
    // process's work too, so only here).
    const idlePath = yield* pacedRun(1, true)
    const outOfOrder = followers.reduce(
      (sum, f) => sum + f.outOfOrder + f.client.stats.gaps + f.client.stats.duplicates,
      0
    )
    for (const f of followers) f.client.close()

    const section = [
      "## Live path",
      "",
      `Measured ${new Date().toISOString().slice(0, 16)} UTC by \`${HOW}node --import tsx test/bench/live.ts ${SESSIONS} ${LINES}\``,
      `on this machine (${cpus().length} cores, shared with other work; figures vary run to run), Node.js ${process.version}, nats-server 2.9, embedded Postgres 17.`,
      `${SESSIONS} conversation sessions with real vm-agents and demo agents (host runtime, ${new Set(sessions.map((s) => s.sessionId)).size} sessions on up to 3 nodes),`,
      "the control plane, the gateway and one WebSocket feed client per session, all on this machine.",
      "",
      "| path | events | events/s | total ms |",
      "|---|---:|---:|---:|",
      `| agent → vm-agent → ingress → session actor (Postgres) → outbox → gateway → feed clients, ${LINES} \`say\` lines per session at once (the second burst) | ${events} | ${perSecond.toFixed(0)} | ${elapsed.toFixed(0)} |`,
      `| the same, the stack's first burst (code that had not run yet, interpreted and then compiled by V8 meanwhile) | ${cold.events} | ${cold.perSecond.toFixed(0)} | ${cold.elapsed.toFixed(0)} |`,
      `| raw core NATS publish → subscribe, as many payloads of 400 bytes | ${events} | ${raw.toFixed(0)} | ${rawElapsed.toFixed(0)} |`,
      "",
      `Ratio live path/raw: ${(perSecond / raw).toFixed(3)}.`,
      `The design's floor (section "Live path: the design's floor", before the stack started), ${SESSIONS} sessions writing ${floor.burst.events / SESSIONS} events each at once: ${floor.burst.perSecond.toFixed(0)} events/s, ${(floor.burst.perSecond / raw).toFixed(3)} of this run's raw core NATS, with ${floor.burst.cpuPerEvent.toFixed(0)} µs of CPU per event in all (this path: ${(perSecond / floor.burst.perSecond).toFixed(2)}× the floor's events/s).`,
      `CPU at idle (every session open, nothing streaming), in % of one core: ${idle.map((c) => `${c.kind} ${c.percent.toFixed(1)}`).join(", ")}; ${idle.reduce((sum, c) => sum + c.percent, 0).toFixed(1)} in all.`,
      `Meanwhile, per second, the process of the control plane, gateway and clients made SQL statements ${idleOps.sql}`,
      `and NATS publishes and requests ${idleOps.nats}.`,
      `CPU time per event in the burst, by process: ${burstCpu.map((c) => `${c.kind} ${c.us.toFixed(0)} µs`).join(", ")}; ${burstCpu.reduce((sum, c) => sum + c.us, 0).toFixed(0)} µs in all.`,
      `The stack's first burst: ${cold.cpu.map((c) => `${c.kind} ${c.us.toFixed(0)} µs`).join(", ")}; ${cold.cpu.reduce((sum, c) => sum + c.us, 0).toFixed(0)} µs in all.`,
      "",
      target.text,
      `(The run before it, the first at this pace, which runs that code before V8 has compiled it: p50 ${warmUp.p50.toFixed(1)} ms, ${warmUp.cpuPerEvent.toFixed(0)} µs of CPU per event.)`,
      "",
      light.text,
      idlePath.text,
      `The design's floor on this machine, measured in this run before the stack started (section "Live path: the design's floor"):`,
      ...(
        [
          [floor.target, target],
          [floor.light, light]
        ] as const
      ).map(
        ([least, ours]) =>
          `at ${least.perSecond * SESSIONS} events/s p50 ${least.p50.toFixed(1)} ms, p99 ${least.p99.toFixed(1)} ms, ${least.cpuPerEvent.toFixed(0)} µs of CPU per event (this path: p50 ${(ours.p50 / least.p50).toFixed(0)}×, CPU per event ${(ours.cpuPerEvent / least.cpuPerEvent).toFixed(1)}× the floor's);`
      ),
      "",
      `Events out of order, missing or repeated at the clients, over all the runs: ${outOfOrder}.`,
      ""
    ].join("\n")
    console.log(section)
    yield* writeSection("Live path", section)
  }).pipe(Effect.provide(env))
})

runBench(
  program.pipe(
    Effect.scoped,
    Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)),
    // as `sam up`: spans to a collector when OTEL_EXPORTER_OTLP_ENDPOINT names one (what tracing costs)
    Effect.provide(Otlp.layer("control-plane"))
  )
)
