import { statfs } from "node:fs/promises"
import { freemem, loadavg, totalmem } from "node:os"
import { join } from "node:path"
import { Consume, Domain, type Envelope, Nats, Publish, Subjects, Trace } from "@sam/bus"
import { Cause, Data, Deferred, Duration, Effect, Fiber, FiberId, Option, Queue, Schedule, Stream } from "effect"
import { AcpSessionHost } from "../acp/AcpSessionHost.js"
import { installedAgents } from "../acp/Harnesses.js"
import { demoAgentCommand, demoAgentCompiled } from "../demo/DemoAgentCommand.js"
import { type BootLogEntry, type RuntimeFailure, WorkspaceRuntime } from "../runtime/WorkspaceRuntime.js"
import { endOf, makeCommandEnds } from "./CommandEnds.js"
import { makeGitCredentials } from "./GitCredentials.js"
import type { NodeSettings } from "./NodeConfig.js"
import { loadNodeKey } from "./NodeKey.js"
import { makeReporter } from "./Reporter.js"
import { makeSessionRecords } from "./SessionRecords.js"
import { makeSessions } from "./Sessions.js"
import { keepTaskBranches, removePartialBundles } from "./TaskCommit.js"

const { NodeProtocol } = Domain

/** How long after a boot-log report the next waits to gather lines, unless the create ends first. */
export const BOOT_LOG_EVERY = Duration.millis(100)
type Command = Domain.NodeProtocol.NodeCommand

/** Commands about one workspace or session run in order; different ones run side by side. */
const keyOf = (command: Command) => {
  switch (command.type) {
    case "workspace.create":
    case "workspace.stop":
    case "workspace.delete":
      return `ws:${command.body.workspaceId}`
    case "session.cancel":
      return `cancel:${command.body.sessionId}`
    case "session.permission-answer":
      return `answer:${command.body.sessionId}`
    default:
      return `sess:${command.body.sessionId}`
  }
}

/** Handling failed for a reason that may pass (the runtime could not reach Docker, an I/O error): try again. */
export class CommandRetry extends Data.TaggedError("CommandRetry")<{ readonly message: string }> {
  static fromRuntime = (failure: RuntimeFailure) =>
    new CommandRetry({ message: `${failure.reason}: ${failure.message}` })
}

/**
 * How long a session's start waits for its workspace's create to begin on this node. The control plane sends
 * both at once (issue 12), through two actors, so either may come first; a create that has begun is awaited
 * however long it takes (its command says it is in progress).
 */
export const WORKSPACE_CREATE_WAIT = Duration.seconds(60)

/** Deliveries of one command before a failure that may pass is given up on (reported `unavailable`). */
export const MAX_COMMAND_DELIVERIES = 5
/** The wait before delivery n + 1 of a command whose handling failed: 0.5 s, doubling, at most 10 s. */
export const retryDelay = (deliveryCount: number) =>
  Duration.millis(Math.min(500 * 2 ** Math.max(0, deliveryCount - 1), 10_000))

/**
 * How a handled command is settled. Handled, or refused with a `command.rejected` report: ack. Failed
 * for a reason that may pass: nak with a growing delay, until the last delivery, which is reported
 * `unavailable` and terminated. A defect (a bug, never fixed by trying again; retrying would repeat its
 * side effects) is reported `unavailable` with the defect and terminated, never silently acked.
 */
export const settleBy = (
  exit: { readonly _tag: "Success" } | { readonly _tag: "Failure"; readonly cause: Cause.Cause<CommandRetry> },
  deliveryCount: number
):
  | { readonly outcome: Consume.Outcome; readonly report?: undefined }
  | { readonly outcome: Consume.Outcome; readonly report: string } => {
  if (exit._tag === "Success") return { outcome: Consume.Outcome.Ack() }
  // Interrupted (the daemon stops): not handled, so it comes again.
  if (Cause.isInterruptedOnly(exit.cause)) return { outcome: Consume.Outcome.Nak({ delay: retryDelay(1) }) }
  const failure = Cause.failureOption(exit.cause)
  if (failure._tag === "Some") {
    if (deliveryCount < MAX_COMMAND_DELIVERIES)
      return { outcome: Consume.Outcome.Nak({ delay: retryDelay(deliveryCount) }) }
    const report = `gave up after ${deliveryCount} deliveries: ${failure.value.message}`
    return { outcome: Consume.Outcome.Term({ reason: report }), report }
  }
  const report = `the node failed to handle it: ${Cause.pretty(exit.cause).split("\n")[0]}`
  return { outcome: Consume.Outcome.Term({ reason: report }), report }
}

/**
 * The vm-agent: reports ready with its capabilities, heartbeats, and carries out the commands of its
 * durable consumer on SAM_NODE (created by the control plane), so commands sent while it was down
 * run when it returns. Each command is settled by its outcome (`settleBy`); a bad one is terminated
 * and answered with a `command.rejected` report that says why.
 */
export const run = Effect.fn("VmAgent.run")(function* (settings: NodeSettings) {
  const scope = yield* Effect.scope
  const runtime = yield* WorkspaceRuntime
  const host = yield* AcpSessionHost
  const reporter = yield* makeReporter(settings.nodeId)
  const records = makeSessionRecords(settings.dataDir)
  const ends = yield* makeCommandEnds(join(settings.dataDir, "command-ends.json"))
  const key = yield* loadNodeKey(settings.dataDir)
  const { nc } = yield* Nats
  const git = makeGitCredentials(nc, settings.nodeId)
  yield* Effect.addFinalizer(() => git.close())
  /** Workspaces whose git asks SAM for repository tokens answer on their socket (ADR 0028). */
  const serveGit = (workspaceId: string) =>
    Effect.gen(function* () {
      const socket = runtime.gitHelper === undefined ? undefined : yield* runtime.gitHelper(workspaceId)
      if (socket !== undefined) yield* git.serve(workspaceId, socket.socketPath, socket.repoUrl, socket.uid)
    })
  /**
   * Workspaces whose create runs now; those of them that already take processes (ADR 0037); and the starts
   * waiting for either moment.
   */
  const creating = new Set<string>()
  const spawnable = new Set<string>()
  const createGates = new Map<string, Deferred.Deferred<void>>()
  const spawnGates = new Map<string, Deferred.Deferred<void>>()
  const gateOf = (gates: Map<string, Deferred.Deferred<void>>, workspaceId: string) => {
    let gate = gates.get(workspaceId)
    if (gate === undefined) {
      gate = Deferred.unsafeMake<void>(FiberId.none)
      gates.set(workspaceId, gate)
    }
    return gate
  }
  const release = (gates: Map<string, Deferred.Deferred<void>>, workspaceId: string) =>
    Effect.suspend(() => {
      const gate = gates.get(workspaceId)
      gates.delete(workspaceId)
      return gate === undefined ? Effect.void : Deferred.succeed(gate, undefined)
    })
  /** the creates that ended without a running workspace, latest last: a start that comes after one ends quietly */
  const failedCreates = new Set<string>()
  const createEnded = (workspaceId: string) =>
    Effect.gen(function* () {
      // what the node holds, not what the create answered (a create refused as a conflict leaves one running)
      const workspace = yield* runtime.get(workspaceId).pipe(Effect.orElseSucceed(() => Option.none()))
      const running = Option.isSome(workspace) && workspace.value.status === "running"
      failedCreates.delete(workspaceId)
      if (!running) failedCreates.add(workspaceId)
      if (failedCreates.size > 1000) failedCreates.delete(failedCreates.values().next().value!)
      creating.delete(workspaceId)
      spawnable.delete(workspaceId)
      yield* release(spawnGates, workspaceId)
      yield* release(createGates, workspaceId)
    })
  /** the create's moment a waiting start asked for, or its end; `failed` when it ended without a running workspace */
  const awaitCreate = (gates: Map<string, Deferred.Deferred<void>>, workspaceId: string) =>
    Effect.gen(function* () {
      const settled = () => (failedCreates.has(workspaceId) ? ("failed" as const) : ("ready" as const))
      if (!creating.has(workspaceId) && failedCreates.has(workspaceId)) return "failed" as const
      const wasCreating = creating.has(workspaceId)
      const current = yield* runtime.get(workspaceId)
      // The create may have ended while its record was read (what was read may be from before): its gates are
      // released already, and one made now would be waited on in vain.
      if (wasCreating && !creating.has(workspaceId)) return settled()
      if (!creating.has(workspaceId) && failedCreates.has(workspaceId)) return "failed" as const
      if (!creating.has(workspaceId) && Option.isSome(current) && current.value.status !== "creating")
        return current.value.status === "error" ? ("failed" as const) : ("ready" as const)
      const gate = gateOf(gates, workspaceId)
      const ended = yield* Deferred.await(gate).pipe(Effect.timeout(WORKSPACE_CREATE_WAIT), Effect.option)
      if (Option.isNone(ended)) {
        if (!creating.has(workspaceId)) {
          if (gates.get(workspaceId) === gate) gates.delete(workspaceId)
          return settled()
        }
        yield* Deferred.await(gate)
      }
      return failedCreates.has(workspaceId) && !creating.has(workspaceId) ? ("failed" as const) : ("ready" as const)
    }).pipe(Effect.catchAll(() => Effect.succeed("ready" as const)))
  const workspaceCreated = (workspaceId: string) => awaitCreate(createGates, workspaceId)
  /** `spawnable`: its create runs and it already takes processes; else as `workspaceCreated` */
  const workspaceStartable = (workspaceId: string) =>
    Effect.suspend(() =>
      spawnable.has(workspaceId)
        ? Effect.succeed("spawnable" as const)
        : awaitCreate(spawnGates, workspaceId).pipe(
            Effect.map((moment) => (spawnable.has(workspaceId) ? ("spawnable" as const) : moment))
          )
    )
  const sessions = makeSessions({
    workspaceCreated,
    workspaceStartable,
    git,
    key,
    dataDir: settings.dataDir,
    runtime,
    host,
    reporter,
    records,
    cancelGraceMs: settings.cancelGraceMs,
    scope
  })
  const capabilities = yield* runtime.capabilities()
  yield* reporter.send(NodeProtocol.NodeReady, {
    nodeId: settings.nodeId,
    version: settings.version,
    capabilities: { docker: capabilities.docker, hostRuntime: capabilities.hostRuntime, agents: installedAgents() }
  })
  yield* Effect.logInfo(`vm-agent ${settings.nodeId} ready (runtime ${runtime.kind})`)
  // What runs in a workspace now is the last run's: its agents and whatever their tools started, also what left the
  // agent's process group (a tool in a session of its own). Its turns are lost (reported below), and their work ends.
  const held = yield* runtime.list()
  yield* Effect.forEach(
    held.filter((w) => w.status === "running"),
    (w) => runtime.endProcesses(w.workspaceId),
    { discard: true, concurrency: 4 }
  )
  if (settings.branchDir !== undefined) {
    const removed = yield* removePartialBundles(
      settings.branchDir,
      held.map((w) => w.workspaceId)
    )
    if (removed > 0) yield* Effect.logInfo(`removed ${removed} partial branch bundle(s) of a keep cut short`)
  }
  yield* sessions.recover(yield* records.list)
  // A demo agent booted ahead, for the next workspace (ADR 0055); only the demo agent takes its whole start later.
  // Its compiled bundle only: run from source, tsx would look for its cache in the machine's /tmp, which any
  // workspace can write, before the agent has a workspace.
  if (settings.warmAgent === "demo" && runtime.keepWarm !== undefined && demoAgentCompiled())
    yield* runtime.keepWarm(demoAgentCommand({ cwd: "/" }).argv)
  for (const workspace of held) {
    if (workspace.status === "running") yield* serveGit(workspace.workspaceId)
  }

  const heartbeat = Effect.gen(function* () {
    const disk = yield* Effect.promise(() => statfs(settings.dataDir).catch(() => undefined))
    const workspaces = yield* runtime.list()
    // what runs first: the reconciler takes a workspace it expects and does not find listed as gone
    const listed = [
      ...workspaces.filter((w) => w.status === "creating" || w.status === "running"),
      ...workspaces.filter((w) => w.status !== "creating" && w.status !== "running")
    ].slice(0, NodeProtocol.MAX_INVENTORY_WORKSPACES)
    yield* Publish.emit(
      Subjects.heartbeat(settings.nodeId),
      NodeProtocol.Heartbeat.make({
        nodeId: settings.nodeId,
        load1: loadavg()[0] ?? 0,
        memoryPercent: Math.round((1 - freemem() / totalmem()) * 1000) / 10,
        diskPercent: disk === undefined ? 0 : Math.round((1 - disk.bavail / disk.blocks) * 1000) / 10,
        activeWorkspaces: workspaces.filter((w) => w.status === "running").length,
        promptingSessions: sessions.prompting(),
        xkey: key.publicKey,
        workspaces: listed.map((w) => ({ workspaceId: w.workspaceId, status: w.status })),
        ...(listed.length < workspaces.length ? { workspacesTruncated: true } : {}),
        agentSessions: sessions.agents()
      })
    )
  }).pipe(
    // a heartbeat that cannot be made or sent is logged, never the end of the heartbeats: a node that still runs
    // and says nothing has every turn on it healed as lost
    Effect.catchAllCause((cause) => Effect.logWarning(`heartbeat failed: ${Cause.pretty(cause)}`)),
    // each a trace of its own, not a child of the daemon's start
    Effect.withSpan("VmAgent.heartbeat", { root: true, captureStackTrace: false })
  )
  yield* heartbeat.pipe(Effect.repeat(Schedule.spaced(`${settings.heartbeatMs} millis`)), Effect.forkScoped)

  const locks = new Map<string, Effect.Semaphore>()
  const lockFor = (key: string) => {
    let lock = locks.get(key)
    if (lock === undefined) {
      lock = Effect.unsafeMakeSemaphore(1)
      locks.set(key, lock)
    }
    return lock
  }

  /** `workspace.create`: its boot log and status reported; a session waiting for it is let go as it ends. */
  const createWorkspace = (
    command: Extract<Command, { readonly type: "workspace.create" }>,
    reject: (code: "conflict" | "invalid", message: string) => Effect.Effect<void>
  ) =>
    Effect.gen(function* () {
      const body = command.body
      // The create's reports go out in order from a fiber of their own, so the workspace is made (and its
      // agent started) while they are published (issue 12: first output): "creating" once the runtime makes
      // it (not for a create delivered again of one it has), then the boot-log
      // lines; the status that ends the create follows them. After a report the sender waits up to
      // BOOT_LOG_EVERY (or until the create ends) and sends what was logged meanwhile as one: a create
      // costs the control plane a few reports, not one per line.
      const lines = yield* Queue.unbounded<
        { readonly line: BootLogEntry } | { readonly sent: Deferred.Deferred<void> } | { readonly provisioning: true }
      >()
      const ended = yield* Deferred.make<void>()
      const report = (run: ReadonlyArray<BootLogEntry>) =>
        run.length === 0
          ? Effect.void
          : reporter
              .send(
                NodeProtocol.BootLogs,
                {
                  workspaceId: body.workspaceId,
                  lines: run.map(({ step, status, message }) => ({ step, status, message }))
                },
                body.workspaceId
              )
              .pipe(Effect.catchAllCause((cause) => Effect.logWarning("boot-log lines were not reported", cause)))
      const creatingReport = reporter.send(
        NodeProtocol.WorkspaceStatusReport,
        { workspaceId: body.workspaceId, status: "creating" },
        body.workspaceId
      )
      const linesReported = Queue.takeBetween(lines, 1, NodeProtocol.MAX_BOOTLOG_LINES_PER_REPORT).pipe(
        Effect.flatMap((items) =>
          Effect.gen(function* () {
            let run: Array<BootLogEntry> = []
            for (const item of items) {
              if ("line" in item) {
                run.push(item.line)
                continue
              }
              if ("provisioning" in item) {
                yield* report(run)
                run = []
                yield* creatingReport
                continue
              }
              yield* report(run)
              run = []
              yield* Deferred.succeed(item.sent, undefined)
            }
            if (run.length === 0) return
            yield* report(run)
            yield* Effect.raceFirst(Effect.sleep(BOOT_LOG_EVERY), Deferred.await(ended))
          })
        ),
        Effect.forever
      )
      const sender = yield* linesReported.pipe(Trace.withCorrelation(command.correlationId), Effect.fork)
      const sent = Effect.gen(function* () {
        const done = yield* Deferred.make<void>()
        yield* Deferred.succeed(ended, undefined)
        yield* Queue.offer(lines, { sent: done })
        yield* Deferred.await(done)
        yield* Fiber.interrupt(sender)
      })
      const created = yield* runtime
        .create(
          {
            workspaceId: body.workspaceId,
            repoUrl: body.repoUrl,
            ...(body.branch === undefined ? {} : { branch: body.branch }),
            env: body.env,
            files: body.files
          },
          {
            // called from the runtime's own fibers: the boot log follows the command that asked for it
            onLog: (line) => Queue.offer(lines, { line }),
            onProvisioning: Queue.offer(lines, { provisioning: true }),
            // the session started with it starts its agent now, while the repository is cloned (ADR 0037)
            onSpawnable: Effect.suspend(() => {
              if (!creating.has(body.workspaceId)) return Effect.void
              spawnable.add(body.workspaceId)
              return release(spawnGates, body.workspaceId)
            }),
            repositoryCredential: git.access(body.workspaceId).pipe(
              Effect.tap((access) =>
                access._tag === "Refused"
                  ? Queue.offer(lines, {
                      line: {
                        workspaceId: body.workspaceId,
                        step: "clone",
                        status: "info",
                        message: `no repository token: ${access.reason}`
                      }
                    })
                  : Effect.void
              ),
              Effect.map((access) => (access._tag === "Granted" ? access.credential : undefined))
            )
          }
        )
        .pipe(Effect.either)
      if (created._tag === "Right" && created.right.status === "running") yield* serveGit(body.workspaceId)
      // the session started with it creates its agent's session now, while the boot log and the status are reported
      yield* createEnded(body.workspaceId)
      yield* sent
      if (created._tag === "Left")
        return yield* reject(created.left._tag === "WorkspaceConflict" ? "conflict" : "invalid", created.left.message)
      const info = created.right
      return yield* reporter.send(
        NodeProtocol.WorkspaceStatusReport,
        {
          workspaceId: info.workspaceId,
          status: info.status === "running" ? "running" : info.status === "stopped" ? "stopped" : "error",
          runtime: info.runtime,
          ...(info.reason === undefined ? {} : { reason: info.reason })
        },
        info.workspaceId
      )
    })

  const handle = (command: Command, subject: string) =>
    Effect.gen(function* () {
      const reject = (code: "not_found" | "conflict" | "invalid" | "unavailable" | "busy", message: string) =>
        reporter.rejected({ messageId: command.id, commandType: command.type, subject, code, message })
      // An agent that could not start for a reason that may pass (I/O) is tried again, as stop and delete are.
      const refuseOrRetry = (r: {
        readonly code: "not_found" | "conflict" | "invalid" | "unavailable" | "busy"
        readonly message: string
        readonly retry?: boolean
      }) => (r.retry === true ? Effect.fail(new CommandRetry({ message: r.message })) : reject(r.code, r.message))
      switch (command.type) {
        case "workspace.create": {
          const { workspaceId } = command.body
          creating.add(workspaceId)
          // a create cut short (interrupted, a defect) still lets its waiting starts go
          return yield* createWorkspace(command, reject).pipe(
            Effect.ensuring(Effect.suspend(() => (creating.has(workspaceId) ? createEnded(workspaceId) : Effect.void)))
          )
        }
        case "workspace.stop": {
          const workspaceId = command.body.workspaceId
          // a stopped workspace's processes are gone: its token and its socket go too (a create serves it again)
          yield* git.forget(workspaceId)
          const current = yield* runtime.get(workspaceId)
          if (settings.branchDir !== undefined && current._tag === "Some" && current.value.status === "running") {
            const kept = yield* keepTaskBranches(runtime, workspaceId, settings.branchDir)
            yield* reporter.send(
              NodeProtocol.BootLog,
              { workspaceId, step: "stop", status: "info", message: kept },
              workspaceId
            )
          }
          const stopped = yield* runtime.stop(command.body.workspaceId).pipe(Effect.either)
          if (stopped._tag === "Left")
            return stopped.left._tag === "WorkspaceNotFound"
              ? yield* reject("not_found", stopped.left.message)
              : yield* CommandRetry.fromRuntime(stopped.left)
          return yield* reporter.send(
            NodeProtocol.WorkspaceStatusReport,
            { workspaceId: command.body.workspaceId, status: "stopped" },
            command.body.workspaceId
          )
        }
        case "workspace.delete": {
          yield* git.forget(command.body.workspaceId)
          const deleted = yield* runtime.delete(command.body.workspaceId).pipe(Effect.either)
          if (deleted._tag === "Left") return yield* CommandRetry.fromRuntime(deleted.left)
          return yield* reporter.send(
            NodeProtocol.WorkspaceStatusReport,
            { workspaceId: command.body.workspaceId, status: "deleted" },
            command.body.workspaceId
          )
        }
        case "session.start":
          return yield* sessions.start(command.body, yield* records.list).pipe(Effect.catchAll(refuseOrRetry))
        case "session.prompt": {
          const record = yield* records.get(command.body.sessionId)
          return yield* sessions
            .prompt(record, command.body.prompt, command.body.promptEpoch)
            .pipe(Effect.catchAll(refuseOrRetry))
        }
        case "session.cancel":
          return yield* sessions.cancel(command.body.sessionId).pipe(Effect.catchAll((r) => reject(r.code, r.message)))
        case "session.stop":
          return yield* sessions.stop(command.body.sessionId)
        case "session.permission-answer": {
          const { sessionId, requestId, optionId } = command.body
          return yield* sessions
            .answerPermission(sessionId, requestId, optionId)
            .pipe(Effect.catchAll((r) => reject(r.code, r.message)))
        }
      }
    })

  /**
   * A command published before its workspace's or session's last stop or delete here is stale (one delivered again
   * after a restart, behind the stop sent meanwhile): acknowledged without running. An ending command is kept as
   * the new end before it runs (`node/CommandEnds.ts`).
   */
  const handleInOrder = (delivery: Consume.Delivery<Command & Envelope>) =>
    Effect.gen(function* () {
      const { envelope } = delivery
      const key = keyOf(envelope)
      const publishedAt = delivery.msg.info.timestampNanos / 1e6
      const end = ends.staleBefore(key, envelope.type, publishedAt)
      if (end !== undefined)
        return yield* Effect.logInfo(
          `${envelope.type} ${envelope.id} was sent before the last stop or delete of ${key} (${new Date(end).toISOString()}): not run`
        )
      const kind = endOf(envelope.type)
      if (kind !== undefined) yield* ends.ended(key, kind, publishedAt)
      return yield* handle(envelope, delivery.subject)
    })

  /** While a command waits for its turn or runs, tell the server it is in progress (its ack wait is short). */
  const inProgress = <A, E, R>(msg: { working(): void }, effect: Effect.Effect<A, E, R>) =>
    Effect.scoped(
      Effect.gen(function* () {
        yield* Effect.forkScoped(Effect.sync(() => msg.working()).pipe(Effect.delay("2 seconds"), Effect.forever))
        return yield* effect
      })
    )

  yield* Consume.consume<ReadonlyArray<{ readonly type: string }>, Command & Envelope>(
    "SAM_NODE",
    Subjects.nodeConsumerName(settings.nodeId),
    NodeProtocol.nodeCommands,
    {
      // Short pulls: one left on the server by a dropped connection ends soon (ADR 0016).
      expires: Consume.NODE_PULL_EXPIRES,
      onMalformed: (report) =>
        reporter.rejected({
          subject: report.subject,
          code: "malformed",
          message: `${report.malformed.reason}: ${report.malformed.message}`
        })
    }
  ).pipe(
    // A stop cuts short a start still waiting for its workspace, ahead of the stop's turn (issue 12).
    Stream.tap((delivery) =>
      delivery.envelope.type === "session.stop" ? sessions.stopRequested(delivery.envelope.body.sessionId) : Effect.void
    ),
    Stream.mapEffect(
      (delivery) =>
        inProgress(
          delivery.msg,
          lockFor(keyOf(delivery.envelope)).withPermits(1)(
            // What a command causes on this node (a turn's reports) carries its correlation id (issue 12).
            handleInOrder(delivery).pipe(Trace.withCorrelation(delivery.envelope.correlationId))
          )
        ).pipe(
          Effect.exit,
          Effect.flatMap((exit) => {
            const { outcome, report } = settleBy(exit, delivery.deliveryCount)
            const { envelope } = delivery
            return Effect.gen(function* () {
              if (exit._tag === "Failure")
                yield* Effect.logError(`${envelope.type} failed (delivery ${delivery.deliveryCount})`, exit.cause)
              if (report !== undefined)
                yield* reporter.rejected({
                  messageId: envelope.id,
                  commandType: envelope.type,
                  subject: delivery.subject,
                  code: "unavailable",
                  message: report
                })
              yield* Consume.settle(delivery, outcome)
            })
          }),
          // a child of the actor's span that sent the command (its `traceparent`): one trace from the request on
          Effect.withSpan("VmAgent.command", {
            captureStackTrace: false,
            attributes: {
              type: delivery.envelope.type,
              subject: delivery.subject,
              streamSequence: delivery.streamSequence
            },
            ...Trace.spanOf(delivery.msg.headers?.get("traceparent"))
          })
        ),
      { concurrency: 16, unordered: true }
    ),
    Stream.runDrain
  )
})
