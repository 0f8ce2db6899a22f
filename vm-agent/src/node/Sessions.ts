import { posix } from "node:path"
import { Domain, Trace } from "@sam/bus"
import { Cause, Deferred, Effect, ExecutionStrategy, Exit, FiberRef, Option, Scope } from "effect"
import { AgentStartError } from "../acp/AcpErrors.js"
import type { AcpSession, AcpSessionHost, PromptTicket } from "../acp/AcpSessionHost.js"
import type { SessionEvent } from "../acp/SessionEvent.js"
import { workspaceSpawner } from "../acp/WorkspaceAgent.js"
import { bootId, processStartTicks, sameGroup } from "../runtime/internal/processGroup.js"
import type { WorkspaceRuntimeService } from "../runtime/WorkspaceRuntime.js"
import { agentStart, type StartRefusal, withPromptAppend } from "./AgentStart.js"
import { fitEvent } from "./FitEvent.js"
import type { GitCredentials } from "./GitCredentials.js"
import type { NodeKey } from "./NodeKey.js"
import type { Reporter } from "./Reporter.js"
import { makeSessionOutbox, type SessionOutbox } from "./SessionOutbox.js"
import type { SessionRecord, SessionRecords } from "./SessionRecords.js"
import { commitTaskWork } from "./TaskCommit.js"

const { NodeProtocol } = Domain
type Rejection = {
  readonly code: "not_found" | "conflict" | "invalid" | "unavailable" | "busy"
  readonly message: string
  /** a failure that may pass (the runtime's I/O): the daemon retries the command instead of refusing it */
  readonly retry?: boolean
}

interface Live {
  /** every report of this session goes through here, so they leave in the order they happened */
  readonly outbox: SessionOutbox
  readonly session: AcpSession
  readonly scope: Scope.CloseableScope
  record: SessionRecord
  readonly turns: Effect.Semaphore
  prompting: boolean
  /** the epoch of the turn running (or last run): its reports carry it, not a newer prompt's */
  turnEpoch: number
  /** the profile's system-prompt addition, for the session's first prompt */
  readonly promptAppend: string | undefined
  /**
   * its task's result is reported: the control plane takes nothing after it (the transcript is final), so
   * what the agent's stop says afterwards is not sent to be refused and audited as foreign
   */
  resulted: boolean
}

export interface SessionsDeps {
  /** repository tokens: a task's branch is pushed with them (ADR 0028) */
  readonly git?: GitCredentials
  readonly dataDir: string
  readonly runtime: WorkspaceRuntimeService
  readonly host: AcpSessionHost
  readonly reporter: Reporter
  readonly records: SessionRecords
  readonly cancelGraceMs: number
  /** the daemon's scope: sessions live in child scopes of it */
  readonly scope: Scope.Scope
  /** opens the launches sealed to this node (ADR 0024) */
  readonly key?: NodeKey
  /**
   * Waits while the session's workspace is (about to be) created on this node: a task's session is started
   * together with its workspace (issue 12). `failed`: the create it waited for did not end running, and the
   * workspace's own report says why; `ready` otherwise (the start then finds the workspace running, or refuses).
   */
  readonly workspaceCreated?: (workspaceId: string) => Effect.Effect<"ready" | "failed">
  /**
   * As `workspaceCreated`, but `spawnable` as soon as the workspace takes processes while its create still runs
   * (ADR 0037): the agent then boots alongside the clone, and its session is created once the create ends.
   */
  readonly workspaceStartable?: (workspaceId: string) => Effect.Effect<"spawnable" | "ready" | "failed">
}

/** When and in which boot a host agent's process started, for a later kill of its group (`recover`). */
const startOf = (pid: number, runtime: string): Pick<SessionRecord, "agentStart"> => {
  if (runtime === "docker") return {}
  const ticks = processStartTicks(pid)
  const boot = bootId()
  return ticks === undefined || boot === undefined ? {} : { agentStart: { ticks, boot } }
}

/** The stop reasons a node reports: ACP's own, as the agent answered them. */
type ReportedStop = NonNullable<Domain.NodeProtocol.SessionActivityBody["stopReason"]>
const AGENT_STOPS: ReadonlySet<string> = new Set<ReportedStop>([
  "end_turn",
  "cancelled",
  "max_tokens",
  "max_turn_requests",
  "refusal"
])
/** A turn's stop reason as the agent gave it; one ACP does not name counts as the turn's end. */
const stopReasonOf = (stopReason: string): ReportedStop =>
  AGENT_STOPS.has(stopReason) ? (stopReason as ReportedStop) : "end_turn"

/**
 * The sessions of this node: each an ACP session host in a scope of its own. Events are reported in
 * `seq` order; activity (prompting, idle, error) is reported around every turn; a turn runs in the
 * background so that cancel and stop are never queued behind it.
 */
export const makeSessions = (deps: SessionsDeps) => {
  const live = new Map<string, Live>()
  /** sessions whose turn runs: their records say so, and a restarted node reports that turn lost */
  const inFlight = new Set<string>()
  /** task-mode sessions whose turn ended and whose task's result is not reported yet (their records say so) */
  const resulting = new Set<string>()
  /**
   * sessions whose start waits for their workspace's create: their turn is on its way (heartbeats say so), and a
   * stop that comes meanwhile ends the wait without an agent
   */
  const waiting = new Map<string, Deferred.Deferred<"stopped">>()
  /** sessions whose agent is started again for a prompt (after a node restart, or a stop of the agent) */
  const reopening = new Set<string>()
  /**
   * sessions cancelled while their start waited, their agent booted, or was started again for a prompt: that turn
   * ends cancelled, unprompted
   */
  const cancelledEarly = new Set<string>()
  const saving = Effect.unsafeMakeSemaphore(1)
  // What is written is read once the write's turn comes, so a slower earlier write never has the last word.
  const save = (record: SessionRecord) =>
    saving.withPermits(1)(
      Effect.suspend(() =>
        deps.records.save({
          ...(live.get(record.sessionId)?.record ?? record),
          turnInFlight: inFlight.has(record.sessionId),
          resultPending: resulting.has(record.sessionId)
        })
      )
    )
  const now = () => new Date().toISOString()
  /**
   * The correlation id of each session's turn (that of the command that started it) and its trace context (the
   * span of that command here): the turn's reports carry both, so one request is followed to the agent's output
   * (issue 12).
   */
  const turnCorrelation = new Map<
    string,
    { readonly epoch: number; readonly id: string | undefined; readonly traceparent: string | undefined }
  >()
  const correlated =
    (sessionId: string, epoch: number) =>
    <A, E, R>(effect: Effect.Effect<A, E, R>) => {
      const turn = turnCorrelation.get(sessionId)
      return turn?.epoch === epoch
        ? Trace.withCorrelation(turn.id)(Trace.continueFrom(turn.traceparent)(effect))
        : effect
    }

  const report = (
    record: SessionRecord,
    body: Omit<Parameters<typeof NodeProtocol.SessionActivity.make>[0], "sessionId" | "observedAt" | "promptEpoch">,
    epoch?: number
  ) =>
    deps.reporter
      .send(
        NodeProtocol.SessionActivity,
        { sessionId: record.sessionId, promptEpoch: epoch ?? record.promptEpoch, observedAt: now(), ...body },
        record.sessionId
      )
      .pipe(correlated(record.sessionId, epoch ?? record.promptEpoch))

  /**
   * Queue an activity report behind the session's events and wait until it is published: what follows
   * it outside the outbox (a task's result) must come after it. `queueActivity` does not wait: what
   * follows it in the outbox (the turn's events) comes after it anyway.
   */
  const queueActivity = (entry: Live, body: Parameters<typeof report>[1]) =>
    Effect.sync(() => entry.outbox.step(report(entry.record, body, entry.turnEpoch)))
  const activity = (entry: Live, body: Parameters<typeof report>[1]) =>
    Effect.gen(function* () {
      const done = yield* Deferred.make<void>()
      entry.outbox.step(
        report(entry.record, body, entry.turnEpoch).pipe(Effect.zipRight(Deferred.succeed(done, undefined)))
      )
      yield* Deferred.await(done)
    })

  /**
   * Start (or, after a node restart, reload) the agent of a recorded session. With `created`, the workspace's
   * create still runs and it takes processes already (ADR 0037): the agent boots now, and what needs the
   * checkout (its files there, its ACP session) waits for `created`.
   */
  const open = (record: SessionRecord, created?: Effect.Effect<void, StartRefusal>) =>
    Effect.gen(function* () {
      const workspace = yield* deps.runtime.get(record.workspaceId)
      const status = Option.isSome(workspace) ? workspace.value.status : undefined
      if (Option.isNone(workspace) || !(status === "running" || (created !== undefined && status === "creating"))) {
        return yield* Effect.fail<Rejection>({
          code: "unavailable",
          message: `workspace ${record.workspaceId} is not running on this node`
        })
      }
      // The agent runs where the workspace is, as its user and with its environment only (ADR 0014). Its state
      // lives in that user's home: outside the checkout (task commits take all of it), across agent restarts.
      const stateDir = posix.join(workspace.value.home, ".sam", "agents", record.sessionId)
      // its credential, runtime files and variables, opened from the sealed launch (ADR 0024)
      const { command, promptAppend } = yield* agentStart({
        record,
        workspace: workspace.value,
        runtime: deps.runtime,
        key: deps.key,
        stateDir,
        ...(created === undefined ? {} : { checkoutReady: created })
      })
      const scope = yield* Scope.fork(deps.scope, ExecutionStrategy.sequential)
      const entry: { current?: Live; record: SessionRecord } = { record }
      // Remember the agent's session id, its process group and the last seq, for a reload; say what
      // must follow the event once it is reported.
      const prepare = (event: SessionEvent) => {
        const { seq, at: _at, ...whole } = event
        const { event: body, bytes } = fitEvent(whole)
        const current = entry.current?.record ?? entry.record
        const next = {
          ...current,
          lastSeq: seq,
          ...(event.type === "agent-started"
            ? { acpSessionId: event.acpSessionId, agentPgid: event.pid, ...startOf(event.pid, workspace.value.runtime) }
            : {})
        }
        if (entry.current !== undefined) entry.current.record = next
        else entry.record = next
        const after =
          event.type === "agent-started" || event.type === "failed"
            ? save(entry.current?.record ?? entry.record).pipe(
                Effect.zipRight(
                  event.type === "failed" ? report(next, { activity: "error", reason: event.reason }) : Effect.void
                )
              )
            : undefined
        return { nodeSeq: seq, epoch: entry.current?.turnEpoch ?? next.promptEpoch, body, bytes, after }
      }
      // What the events of no turn of this command's carry: the correlation and trace this session began under.
      const ambient = { id: yield* FiberRef.get(Trace.correlation), traceparent: yield* Trace.currentTraceparent }
      const outbox = makeSessionOutbox({
        runtime: yield* Effect.runtime<never>(),
        skipEvents: () => entry.current?.resulted === true,
        prepare,
        // A run of events, with the correlation id of the turn they belong to.
        publish: (events, epoch) => {
          const turn = turnCorrelation.get(record.sessionId)
          // a report with none of its turn's carries the session's (what the publish took from its fiber before)
          const ours =
            turn?.epoch === epoch
              ? { id: turn.id ?? ambient.id, traceparent: turn.traceparent ?? ambient.traceparent }
              : ambient
          const sent = {
            id: record.sessionId,
            correlationId: ours.id,
            traceparent: ours.traceparent,
            open: outbox.isOpen
          }
          return events.length === 1
            ? deps.reporter.sendEventNow(
                NodeProtocol.SessionEvent,
                {
                  sessionId: record.sessionId,
                  nodeSeq: events[0]!.nodeSeq,
                  promptEpoch: epoch,
                  event: events[0]!.event
                },
                sent
              )
            : deps.reporter.sendEventNow(
                NodeProtocol.SessionEvents,
                { sessionId: record.sessionId, promptEpoch: epoch, events },
                sent
              )
        }
      })
      const session = yield* deps.host
        .start({
          command,
          spawn: workspaceSpawner(deps.runtime, record.workspaceId),
          ...(record.acpSessionId === undefined ? {} : { resumeSessionId: record.acpSessionId }),
          lastSeq: record.lastSeq,
          ...(created === undefined
            ? {}
            : {
                beforeSession: created.pipe(
                  Effect.mapError((r) => new AgentStartError({ reason: "session", message: r.message }))
                )
              }),
          cancelGrace: `${deps.cancelGraceMs} millis`,
          onEvent: outbox.event
        })
        .pipe(
          Scope.extend(scope),
          Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : Scope.close(scope, Exit.void))),
          Effect.mapError(
            (e): Rejection => ({
              code: "unavailable",
              message: `agent did not start: ${e.message}`,
              ...(e.transient === true ? { retry: true } : {})
            })
          )
        )
      const turns = yield* Effect.makeSemaphore(1)
      entry.current = {
        outbox,
        session,
        scope,
        record: entry.record,
        turns,
        prompting: false,
        turnEpoch: entry.record.promptEpoch,
        promptAppend,
        resulted: false
      }
      live.set(record.sessionId, entry.current)
      // closed before the agent's own finalizers run (added after them), as the fiber it replaces was interrupted
      yield* Scope.addFinalizer(scope, outbox.close)
      outbox.begin()
      return entry.current
    })

  const dropToken = (workspaceId: string) => (deps.git === undefined ? Effect.void : deps.git.dropToken(workspaceId))

  const runTurn = (entry: Live, text: string, epoch: number, ticket: PromptTicket) =>
    turn(entry, text, epoch, ticket).pipe(
      Effect.catchAllCause((cause) =>
        Effect.logError(`turn of ${entry.record.sessionId} failed: ${Cause.pretty(cause)}`)
      )
    )

  const turn = (entry: Live, text: string, epoch: number, ticket: PromptTicket) =>
    entry.turns.withPermits(1)(
      Effect.gen(function* () {
        entry.turnEpoch = epoch
        turnCorrelation.set(entry.record.sessionId, {
          epoch,
          id: yield* FiberRef.get(Trace.correlation),
          traceparent: yield* Trace.currentTraceparent
        })
        const record = entry.record
        entry.prompting = true
        inFlight.add(record.sessionId)
        yield* save(entry.record)
        // the agent gets its prompt at once; the report goes out first, in the outbox's order (issue 12)
        yield* queueActivity(entry, { activity: "prompting" })
        const result = yield* Effect.either(entry.session.prompt(text, ticket))
        entry.prompting = false
        inFlight.delete(record.sessionId)
        // A task-mode run reports its task's result when its turn ended or failed; until then its record says so. One
        // the agent ended short of its work (cancelled, at a limit, refusing) reports none: its task waits for a follow-up.
        const resultDue =
          record.mode === "task" &&
          record.taskId !== undefined &&
          (result._tag === "Left" || stopReasonOf(result.right.stopReason) === "end_turn")
        if (resultDue) resulting.add(record.sessionId)
        yield* save(entry.record)
        const resulted = Effect.suspend(() => {
          resulting.delete(record.sessionId)
          return save(entry.record)
        })
        if (result._tag === "Left") {
          yield* activity(entry, { activity: "error", stopReason: "error", reason: result.left.message })
          if (record.mode === "task" && record.taskId !== undefined) {
            entry.resulted = true
            yield* deps.reporter.send(NodeProtocol.TaskResult, {
              taskId: record.taskId,
              sessionId: record.sessionId,
              outcome: "failed",
              reason: result.left.message,
              failedIn: "turn"
            })
            yield* dropToken(record.workspaceId)
            yield* resulted
          }
          return
        }
        const stopReason = stopReasonOf(result.right.stopReason)
        yield* activity(entry, {
          activity: "idle",
          stopReason,
          ...(entry.record.acpSessionId ? { acpSessionId: entry.record.acpSessionId } : {})
        })
        if (record.mode === "task" && record.taskId !== undefined && stopReason === "end_turn") {
          const outcome = yield* commitTaskWork(deps.runtime, record.workspaceId, record.taskId, deps.git)
          entry.resulted = true
          yield* deps.reporter.send(NodeProtocol.TaskResult, {
            taskId: record.taskId,
            sessionId: record.sessionId,
            ...outcome
          })
          // its work is pushed and its task ends: no token is kept for what may still ask
          yield* dropToken(record.workspaceId)
          yield* resulted
        }
      })
    )

  /**
   * A `session.start`, listed as on its way (`waiting`) until its agent runs: it waits for its workspace's create to
   * take processes (ADR 0037) or end, starts the agent, and creates its session once the create ends. A stop that
   * comes meanwhile, or a create that fails, ends it without an agent and without a refusal.
   */
  const startWaiting = (body: Domain.NodeProtocol.SessionStartBody, stopped: Deferred.Deferred<"stopped">) =>
    Effect.gen(function* () {
      const notStarted = Effect.logWarning(
        `session ${body.sessionId} not started: its workspace ${body.workspaceId} was not created (its report says why)`
      )
      /** why the start ended without an agent and without a refusal: the stop came, or the create failed */
      let abandoned: "stopped" | "failed" | undefined
      const untilStopped = <A>(effect: Effect.Effect<A>) => Effect.raceFirst(effect, Deferred.await(stopped))
      const moment =
        deps.workspaceStartable !== undefined
          ? yield* untilStopped(deps.workspaceStartable(body.workspaceId))
          : deps.workspaceCreated !== undefined
            ? yield* untilStopped(deps.workspaceCreated(body.workspaceId))
            : "ready"
      if (moment === "stopped" || moment === "failed") {
        if (moment === "failed") yield* notStarted
        return
      }
      const created =
        moment === "spawnable" && deps.workspaceCreated !== undefined
          ? untilStopped(deps.workspaceCreated(body.workspaceId)).pipe(
              Effect.flatMap((end) => {
                if (end === "ready") return Effect.void
                abandoned = end
                return Effect.fail<StartRefusal>({ code: "unavailable", message: `workspace ${end}` })
              })
            )
          : undefined
      const record: SessionRecord = {
        sessionId: body.sessionId,
        workspaceId: body.workspaceId,
        ...(body.taskId === undefined ? {} : { taskId: body.taskId }),
        agent: body.agent,
        mode: body.mode,
        ...(body.acpSessionId === undefined ? {} : { acpSessionId: body.acpSessionId }),
        ...(body.launch === undefined ? {} : { launch: body.launch }),
        lastSeq: 0,
        promptEpoch: 1
      }
      const opened = yield* open(record, created).pipe(Effect.either)
      if (opened._tag === "Left") {
        // started alongside its create: a create that failed meanwhile is the cause, and its report says so
        if (created !== undefined && abandoned === undefined) yield* Effect.ignore(created)
        if (abandoned === "failed") yield* notStarted
        if (abandoned !== undefined) return
        return yield* Effect.fail(opened.left)
      }
      const entry = opened.right
      if (cancelledEarly.delete(body.sessionId)) {
        // a user cancelled before the agent had the prompt: the turn ends cancelled, and the agent waits
        yield* Effect.forkIn(
          entry.turns.withPermits(1)(
            Effect.gen(function* () {
              entry.turnEpoch = entry.record.promptEpoch
              yield* activity(entry, {
                activity: "idle",
                stopReason: "cancelled",
                reason: "cancelled before the agent had started",
                ...(entry.record.acpSessionId ? { acpSessionId: entry.record.acpSessionId } : {})
              })
            })
          ),
          deps.scope
        )
        return
      }
      // its first turn saves the record (with the turn in flight) before the agent gets the prompt
      yield* Effect.forkIn(
        runTurn(
          entry,
          withPromptAppend(body.prompt, entry.promptAppend),
          entry.record.promptEpoch,
          // from here a cancel ends this first turn cancelled, before or while the agent gets it
          entry.session.reserve()
        ),
        deps.scope
      )
    })

  const ensureOpen = (record: SessionRecord) => {
    const existing = live.get(record.sessionId)
    return existing === undefined ? open(record) : Effect.succeed(existing)
  }

  return {
    /** `session.start`: a repeated start of a known session is a no-op */
    start: (body: Domain.NodeProtocol.SessionStartBody, records: ReadonlyArray<SessionRecord>) =>
      Effect.gen(function* () {
        if (live.has(body.sessionId) || records.some((r) => r.sessionId === body.sessionId)) return
        const stopped = yield* Deferred.make<"stopped">()
        waiting.set(body.sessionId, stopped)
        return yield* startWaiting(body, stopped).pipe(
          Effect.ensuring(
            Effect.sync(() => {
              waiting.delete(body.sessionId)
              cancelledEarly.delete(body.sessionId)
            })
          )
        )
      }),
    prompt: (record: SessionRecord | undefined, text: string, epoch: number) =>
      Effect.gen(function* () {
        const known = live.get(record?.sessionId ?? "")?.record ?? record
        if (known === undefined)
          return yield* Effect.fail<Rejection>({ code: "not_found", message: "no such session on this node" })
        const reopen = !live.has(known.sessionId)
        if (reopen) reopening.add(known.sessionId)
        const entry = yield* ensureOpen(known).pipe(
          Effect.ensuring(
            Effect.sync(() => {
              if (!reopen) return
              reopening.delete(known.sessionId)
              if (!live.has(known.sessionId)) cancelledEarly.delete(known.sessionId)
            })
          )
        )
        const early = reopen && cancelledEarly.delete(known.sessionId)
        // Epochs grow with every prompt the control plane sends: one we have seen is a redelivery.
        if (epoch <= entry.record.promptEpoch) return
        // from here a cancel ends this turn cancelled, also one that comes while its record is saved (issue 12)
        const ticket = entry.session.reserve()
        ticket.cancelled = early
        entry.record = { ...entry.record, promptEpoch: epoch }
        yield* save(entry.record)
        yield* Effect.forkIn(runTurn(entry, text, epoch, ticket), deps.scope)
      }),
    cancel: (sessionId: string) =>
      Effect.gen(function* () {
        const entry = live.get(sessionId)
        // its start still waits for the workspace, or its agent boots (or boots again for a prompt): that turn ends
        // cancelled then
        if (entry === undefined && (waiting.has(sessionId) || reopening.has(sessionId))) {
          cancelledEarly.add(sessionId)
          return
        }
        if (entry === undefined)
          return yield* Effect.fail<Rejection>({
            code: "invalid",
            message: "nothing to cancel: the session has no agent running on this node"
          })
        const result = yield* entry.session.cancel()
        if (result._tag === "NothingToCancel") {
          // its agent runs, but its start (or its start again for a prompt) has not handed it the turn yet
          if (waiting.has(sessionId) || reopening.has(sessionId)) {
            cancelledEarly.add(sessionId)
            return
          }
          return yield* Effect.fail<Rejection>({ code: "invalid", message: result.message })
        }
      }),
    /** `session.permission-answer`: hand a member's (or the policy's) answer to the waiting agent */
    answerPermission: (sessionId: string, requestId: string, optionId: string) =>
      Effect.gen(function* () {
        const entry = live.get(sessionId)
        const answered = entry === undefined ? false : yield* entry.session.answerPermission(requestId, optionId)
        if (!answered)
          return yield* Effect.fail<Rejection>({
            code: "invalid",
            message: `no permission request ${requestId} waits in this session on this node`
          })
      }),
    stop: (sessionId: string) =>
      Effect.gen(function* () {
        const entry = live.get(sessionId)
        live.delete(sessionId)
        turnCorrelation.delete(sessionId)
        if (entry !== undefined) {
          yield* entry.session.stop()
          if (!entry.resulted) yield* activity(entry, { activity: "stopped" })
          yield* Scope.close(entry.scope, Exit.void)
          yield* dropToken(entry.record.workspaceId)
        }
        // behind any save still renaming its record, which would otherwise bring the record back
        yield* saving.withPermits(1)(deps.records.remove(sessionId))
      }),
    /**
     * After a node restart: a turn that was in flight is gone; say so (`idle`, stop reason `lost`), so no
     * session shows working forever. The record stays: the next prompt reloads the agent's session.
     */
    recover: (records: ReadonlyArray<SessionRecord>) =>
      Effect.forEach(
        records,
        (record) =>
          Effect.gen(function* () {
            // The agent of the previous run outlived it (its own process group): end it where it runs.
            const pgid = record.agentPgid
            if (pgid === undefined) return
            const workspace = yield* deps.runtime.get(record.workspaceId)
            if (Option.isSome(workspace) && workspace.value.runtime === "docker") {
              if (workspace.value.status !== "running") return
              yield* deps.runtime
                .exec(record.workspaceId, ["/bin/sh", "-c", 'kill -s KILL -- "-$0" 2>/dev/null; true', String(pgid)])
                .pipe(Effect.ignore)
              return
            }
            // only while the group is still the agent's: after a reboot, or once the number went to another program,
            // this kill (as root) would hit what is not ours
            if (record.agentStart === undefined || !sameGroup(pgid, record.agentStart.ticks, record.agentStart.boot))
              return yield* Effect.logInfo(
                `session ${record.sessionId}: its agent's process group ${pgid} is not its own any more; left alone`
              )
            try {
              process.kill(-pgid, "SIGKILL")
            } catch {}
          }).pipe(
            Effect.zipRight(
              record.turnInFlight === true
                ? report(record, {
                    activity: "idle",
                    stopReason: "lost",
                    reason: "the node restarted; the turn in flight was lost"
                  }).pipe(Effect.zipRight(deps.records.save({ ...record, turnInFlight: false })))
                : Effect.void
            ),
            // its turn ended, and the node stopped before its task's result was reported (the commit and push
            // were cut short): the task fails with this reason instead of waiting for a result that never comes
            Effect.zipRight(
              record.resultPending === true && record.taskId !== undefined
                ? deps.reporter
                    .send(NodeProtocol.TaskResult, {
                      taskId: record.taskId,
                      sessionId: record.sessionId,
                      outcome: "failed",
                      reason: "the node restarted while it kept the task's work (its commit and push); start it again"
                    })
                    .pipe(Effect.zipRight(deps.records.save({ ...record, turnInFlight: false, resultPending: false })))
                : Effect.void
            )
          ),
        { discard: true }
      ),
    /**
     * A `session.stop` arrived (it runs after the session's start, in order): a start still waiting for its
     * workspace ends now without starting the agent.
     */
    stopRequested: (sessionId: string) =>
      Effect.suspend(() => {
        const stopped = waiting.get(sessionId)
        return stopped === undefined ? Effect.void : Deferred.succeed(stopped, "stopped")
      }),
    prompting: () => [
      ...waiting.keys(),
      ...[...live.values()].filter((e) => e.prompting).map((e) => e.record.sessionId)
    ],
    /** sessions whose agent process runs here (the reconciler's evidence, ADR 0023) */
    agents: () => [...live.keys()]
  }
}
export type Sessions = ReturnType<typeof makeSessions>
