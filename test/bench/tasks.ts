/**
 * Benchmark: task create → first agent output on a warm node, through the whole control plane (task,
 * workspace and session actors, the vm-agent, a workspace clone, the demo agent over ACP), for the
 * host runtime and, when a Docker engine can be had, the Docker runtime. The raw baseline, measured
 * in the same run: start the same demo agent directly and prompt it (spawn, initialize, new session,
 * prompt → first text), the work no system can skip. Run: `node --import tsx test/bench/tasks.ts [N]`.
 * Rewrites the "Tasks" section of docs/benchmarks.md. With `SAM_BENCH_TIMELINE=1` it also prints each
 * host-runtime task's spans (the actors, their SQL statements, the bus handlers) on one clock; tracing
 * every span slows the path, so the figures of such a run are not comparable.
 */
import { cpus } from "node:os"
import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { Actors, ControlPlane } from "@sam/actors"
import { Domain, makeId, Nats, registry } from "@sam/bus"
import { Deferred, Effect, Fiber, Logger, LogLevel, Stream } from "effect"
import * as DockerEngine from "../../infra/src/DockerEngine.js"
import * as WorkspaceImage from "../../infra/src/WorkspaceImage.js"
import { AcpSessionHost } from "../../vm-agent/src/acp/AcpSessionHost.js"
import { demoAgentCommand } from "../../vm-agent/src/demo/DemoAgentCommand.js"
import { makeRepo } from "../src/Repo.js"
import { startTestStack } from "../src/TestStack.js"
import { compiledAgents, controlPlaneOn, runBench, scratch, writeSection } from "./BenchReport.js"
import * as SpanTimeline from "./SpanTimeline.js"
import { demoAgents, warmAgentBooted } from "./WarmAgent.js"

const N = Number(process.argv[2] ?? 10)
/** the vm-agents and demo agents as `./sam` runs them, compiled */
const HOW = compiledAgents()
const { ControlProtocol: C, SessionEvents: E } = Domain
const timeline = process.env.SAM_BENCH_TIMELINE === "1" ? SpanTimeline.make() : undefined
const events = registry(ControlPlane.TaskStatusEvent, E.SessionEventAppended, E.SessionEventBatch, E.SessionSlept)

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
const summary = (ms: Array<number>) => {
  ms.sort((a, b) => a - b)
  return { p50: percentile(ms, 50), p99: percentile(ms, 99) }
}

/**
 * The hops of one task up to its first output, from the actors' inbox (each applied command's type and
 * correlation id, ADR 0029): `kind type #n` → ms after the submit, for the commands applied before the
 * first text reached the bus.
 */
const hopsOf = (correlationId: string, startedAt: number, until: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ kind: string; type: string; at: Date }>`
      SELECT kind, type, processed_at AS at FROM actor_inbox WHERE correlation_id = ${correlationId}
      ORDER BY processed_at`
    const seen = new Map<string, number>()
    const hops: Array<[string, number]> = []
    for (const row of rows) {
      const ms = row.at.getTime() - startedAt
      if (ms > until) break
      const key = `${row.kind} ${row.type}`
      const n = (seen.get(key) ?? 0) + 1
      seen.set(key, n)
      hops.push([n === 1 ? key : `${key} #${n}`, ms])
    }
    return hops
  })

const MILESTONES = [
  "node gets workspace.create",
  "node gets session.start",
  "node reports its workspace running",
  "node reports agent-started",
  "node reports the first text"
] as const
type Milestone = (typeof MILESTONES)[number]

/** The milestone a message on the bus is, if it is one: a command to a node, or a node's report. */
const milestoneOf = (subject: string, data: Uint8Array): Milestone | undefined => {
  if (!subject.startsWith("sam.node.") && !subject.startsWith("sam.agent.")) return undefined
  let message: { type?: string; body?: Record<string, unknown> }
  try {
    message = JSON.parse(new TextDecoder().decode(data))
  } catch {
    return undefined
  }
  const body = message.body ?? {}
  const eventTypes =
    message.type === "session.event-reported"
      ? [(body.event as { type?: string } | undefined)?.type]
      : message.type === "session.events-reported"
        ? ((body.events ?? []) as Array<{ event?: { type?: string } }>).map((e) => e.event?.type)
        : []
  if (message.type === "workspace.create") return "node gets workspace.create"
  if (message.type === "session.start") return "node gets session.start"
  if (message.type === "workspace.status-reported" && body.status === "running")
    return "node reports its workspace running"
  if (eventTypes.includes("agent-started")) return "node reports agent-started"
  if (eventTypes.includes("text")) return "node reports the first text"
  return undefined
}

/** A task slower than this prints its milestones and hops. */
const SLOW_MS = 10_000

/** Time from `task.submit` to the first text the agent streams, for `count` tasks one after another. */
const timeTasks = (count: number, projectId: string, userId: string, runtime: "host" | "docker") =>
  Effect.gen(function* () {
    const { nc } = yield* Nats
    const latencies: Array<number> = []
    /** each task slower than SLOW_MS with its steps, ms after its submit (written into the report) */
    const slow: Array<string> = []
    const hopTimes = new Map<string, Array<number>>()
    const milestoneTimes = new Map<string, Array<number>>()
    /** host tasks that started with no warm agent booted and waiting (none within 10 s of the one before) */
    let withoutWarmAgent = 0
    for (let i = 0; i <= count; i++) {
      const taskId = makeId("task")
      const first = yield* Deferred.make<number>()
      const ended = yield* Deferred.make<void>()
      const slept = yield* Deferred.make<void>()
      let sessionId: string | undefined
      const sub = nc.subscribe(`sam.evt.${projectId}.>`, {
        callback: (_, msg) => {
          const decoded = events.decode(msg.data)
          if (decoded._tag !== "Ok") return
          const e = decoded.envelope
          if (e.type === "task.status" && e.body.taskId === taskId && e.body.sessionId) sessionId = e.body.sessionId
          if (e.type === "task.status" && e.body.taskId === taskId && Domain.TERMINAL_TASK_STATUSES.has(e.body.status))
            Deferred.unsafeDone(ended, Effect.void)
          if (e.type === "session.slept" && e.body.sessionId === sessionId) Deferred.unsafeDone(slept, Effect.void)
          // the first text, alone or in a batch of entries persisted together
          const texts =
            e.type === "session.event"
              ? [e.body.event]
              : e.type === "session.event-batch"
                ? e.body.entries.map((entry) => entry.event)
                : []
          if (e.body.sessionId === sessionId && texts.some((event) => event.type === "text")) {
            Deferred.unsafeDone(first, Effect.succeed(performance.now()))
          }
        }
      })
      // What crosses the bus for it: the node's commands and reports (milestones, first of each after the submit).
      const seen = new Map<string, number>()
      const mark = (name: string) => {
        if (!seen.has(name)) seen.set(name, performance.now() - start)
      }
      const bus = nc.subscribe("sam.>", {
        callback: (_, msg) => {
          const milestone = milestoneOf(msg.subject, msg.data)
          if (milestone !== undefined) mark(milestone)
        }
      })
      const submit = C.TaskSubmit.make({
        taskId,
        projectId: projectId as never,
        userId: userId as never,
        prompt: "say hello"
      })
      const startedAt = Date.now()
      const start = performance.now()
      timeline?.clear()
      yield* Actors.ask(ControlPlane.TaskRef, taskId, submit)
      const at = yield* Deferred.await(first).pipe(Effect.timeout("120 seconds"))
      // The next task starts on an idle warm node: this one ended, its session slept, its agent exited.
      yield* Deferred.await(ended).pipe(Effect.zipRight(Deferred.await(slept)), Effect.timeout("60 seconds"))
      const deadline = Date.now() + 30_000
      while (demoAgents().sessions > 0 && Date.now() < deadline) yield* Effect.sleep("10 millis")
      // and, on the host runtime, its warm agent has booted for the next workspace (ADR 0055): a node that is warm
      if (runtime === "host" && i < count && !(yield* warmAgentBooted)) withoutWarmAgent += 1
      sub.unsubscribe()
      bus.unsubscribe()
      // The first task warms the node (provisioning, first agent start); it is not counted.
      if (i > 0) {
        if (timeline !== undefined && runtime === "host") {
          const from = performance.timeOrigin + start
          console.log(`\ntask ${i}: its spans, ms after the submit (first text at ${(at - start).toFixed(1)} ms)`)
          console.log(timeline.between(from, from + (at - start)).join("\n"))
        }
        latencies.push(at - start)
        const hops = yield* hopsOf(submit.id, startedAt, at - start)
        for (const [hop, ms] of hops) hopTimes.set(hop, [...(hopTimes.get(hop) ?? []), ms])
        // An outlier says where its time went: the node's milestones and the actors' hops, ms after the submit.
        if (at - start > SLOW_MS) {
          const steps = [...seen, ...hops].sort((a, b) => a[1] - b[1])
          slow.push(
            `${runtime} task ${i}, ${(at - start).toFixed(0)} ms: ${steps.map(([name, ms]) => `${name} at ${ms.toFixed(0)}`).join(", ")}`
          )
          console.log(`\n${slow.at(-1)}`)
        }
        for (const [name, ms] of seen) milestoneTimes.set(name, [...(milestoneTimes.get(name) ?? []), ms])
      }
    }
    // each hop seen in at least half the tasks, by its median time after the submit
    const hops = [...hopTimes]
      .filter(([, times]) => times.length * 2 >= count)
      .map(([hop, times]) => [hop, summary(times).p50] as const)
      .sort((a, b) => a[1] - b[1])
    const milestones = Object.fromEntries(
      MILESTONES.map((name) => [name, summary(milestoneTimes.get(name) ?? []).p50] as const)
    ) as Record<Milestone, number>
    return { ...summary(latencies), hops, milestones, slow, withoutWarmAgent }
  })

const throughControlPlane = (runtime: "host" | "docker", dockerSocket?: string) =>
  Effect.gen(function* () {
    const running = yield* Effect.acquireRelease(Effect.promise(startTestStack), (r) => Effect.promise(r.close))
    const stack = running.stack
    return yield* Effect.gen(function* () {
      const db = yield* SqlClient.SqlClient
      const userId = makeId("user")
      const projectId = makeId("proj")
      const repo = makeRepo(join(yield* scratch("sam-bench-"), "repo"))
      yield* db`INSERT INTO users (id, display_name) VALUES (${userId}, 'bench')`
      yield* db`INSERT INTO projects (id, owner_id, name, repo_url) VALUES (${projectId}, ${userId}, 'bench', ${repo})`
      yield* db`INSERT INTO project_members (project_id, user_id, role) VALUES (${projectId}, ${userId}, 'owner')`
      return yield* timeTasks(N, projectId, userId, runtime)
    }).pipe(
      Effect.provide(
        controlPlaneOn(stack, {
          runtime,
          ...(dockerSocket === undefined ? {} : { nodeEnv: { SAM_DOCKER_SOCKET: dockerSocket } })
        })
      )
    )
  }).pipe(Effect.scoped)

/** The raw baseline: the demo agent started and prompted directly, no control plane, no workspace. */
const direct = Effect.gen(function* () {
  const host = yield* AcpSessionHost
  const cwd = yield* scratch("sam-bench-direct-")
  const latencies: Array<number> = []
  for (let i = 0; i <= N; i++) {
    const start = performance.now()
    yield* Effect.scoped(
      Effect.gen(function* () {
        const session = yield* host.start({ command: demoAgentCommand({ cwd }) })
        const stream = yield* session.subscribe
        // timed at the first text, as the tasks are, not at the end of the turn
        const firstText = yield* Stream.runHead(Stream.filter(stream, (e) => e.type === "text")).pipe(
          Effect.map(() => performance.now()),
          Effect.fork
        )
        yield* session.prompt("say hello")
        const at = yield* Fiber.join(firstText)
        if (i > 0) latencies.push(at - start)
      })
    )
  }
  return summary(latencies)
}).pipe(Effect.provide(AcpSessionHost.Default))

const dockerEngine = Effect.gen(function* () {
  yield* DockerEngine.ensureInstalled(() => undefined)
  // the scratch directory is deleted after the engine stops (finalizers run last first)
  const engine = yield* DockerEngine.start({ dir: yield* scratch("sam-bench-docker-") })
  yield* WorkspaceImage.ensure(engine, { onProgress: () => undefined })
  return engine.socketPath
})

const program = Effect.gen(function* () {
  const baseline = yield* direct
  const host = yield* throughControlPlane("host")
  const docker = yield* dockerEngine.pipe(
    Effect.flatMap((socket) => throughControlPlane("docker", socket)),
    Effect.map((figures) => ({ ok: true as const, figures })),
    Effect.catchAll((error) =>
      Effect.succeed({ ok: false as const, reason: String((error as Error).message ?? error) })
    )
  )
  const row = (name: string, f: { p50: number; p99: number }) =>
    `| ${name} | ${f.p50.toFixed(0)} | ${f.p99.toFixed(0)} | ${(f.p50 / baseline.p50).toFixed(1)}× |`
  const section = [
    "## Tasks",
    "",
    `Measured ${new Date().toISOString().slice(0, 16)} UTC by \`${HOW}node --import tsx test/bench/tasks.ts ${N}\` on this machine`,
    `(${cpus().length} cores, shared with other work), ${N} tasks one after another on a warm node (the first task,`,
    "which provisions the node, is not counted), each once the one before has ended, its session slept and its agent",
    "exited, and on the host runtime once its warm agent (ADR 0055) has booted for the next workspace: an idle warm",
    `node (${host.withoutWarmAgent} of the ${N} host tasks started without one, none having booted within 10 s; booted:`,
    "it has used no CPU for 150 ms).",
    "Time from `task.submit` to the first text the agent streams",
    "(prompt `say hello`). Baseline: the same demo agent started and prompted directly, in the same run.",
    "",
    "| path | p50 ms | p99 ms | p50 vs baseline |",
    "|---|---:|---:|---:|",
    row("baseline: demo agent spawned and prompted directly", baseline),
    row("task through the control plane, host runtime", host),
    docker.ok
      ? row("task through the control plane, Docker runtime", docker.figures)
      : `| Docker runtime | — | — | not measured: ${docker.reason} |`,
    "",
    "The difference is the control plane's path: the task, workspace and session actors (a Postgres",
    "transaction each, relayed through the outbox), the node's durable consumer, a workspace clone, and",
    "the report ingress back. Where it goes, host runtime: each command the actors applied for the task,",
    "at its median time after the submit (from the inbox rows of the task's correlation id, ADR 0029; what",
    "happens on the node shows as the gap before the report that follows it):",
    "",
    "| hop (actor, command) | p50 ms after submit |",
    "|---|---:|",
    ...host.hops.map(([hop, ms]) => `| ${hop} | ${ms.toFixed(0)} |`),
    `| first text at the bus | ${host.p50.toFixed(0)} |`,
    "",
    "The same tasks as the node sees them: the commands it got and the reports it sent, each at its median",
    "time after the submit, read from the bus:",
    "",
    "| on the bus | host p50 ms after submit | Docker p50 ms after submit |",
    "|---|---:|---:|",
    ...MILESTONES.map(
      (name) =>
        `| ${name} | ${host.milestones[name].toFixed(0)} | ${docker.ok ? docker.figures.milestones[name].toFixed(0) : "—"} |`
    ),
    `| first text at the bus (the control plane's event) | ${host.p50.toFixed(0)} | ${docker.ok ? docker.figures.p50.toFixed(0) : "—"} |`,
    "",
    `So, at the medians: the control plane takes ${host.milestones["node gets session.start"].toFixed(0)} ms to hand the node its`,
    `session, the node ${(host.milestones["node reports the first text"] - host.milestones["node gets session.start"]).toFixed(0)} ms from there to report the first text`,
    `(the agent's own start, alone, ${baseline.p50.toFixed(0)} ms), and the control plane ${(host.p50 - host.milestones["node reports the first text"]).toFixed(0)} ms to turn that`,
    "report into the event a feed shows.",
    ...[...host.slow, ...(docker.ok ? docker.figures.slow : [])].flatMap((line, i) => [
      ...(i === 0
        ? ["", `Tasks slower than ${SLOW_MS / 1000} s in this run, with each step in ms after the submit:`, ""]
        : []),
      `- ${line}`
    ]),
    ""
  ].join("\n")
  yield* writeSection("Tasks", section)
})

runBench(
  program.pipe(
    timeline === undefined ? (run) => run : Effect.withTracer(timeline.tracer),
    Effect.scoped,
    Effect.provide(Logger.minimumLogLevel(LogLevel.Warning))
  )
)
