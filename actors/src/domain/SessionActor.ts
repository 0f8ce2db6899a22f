import { Domain, type Envelope, type EnvelopeOf, Kv, SessionId, Subjects, Topology, Trace } from "@sam/bus"
import { Config, Duration, Effect } from "effect"
import * as Actor from "../ActorKind.js"
import { type Launches, launches } from "./AgentLaunches.js"
import { SessionRef, TaskRef } from "./Kinds.js"
import { batchTranscript } from "./SessionEventBatches.js"
import * as Ledger from "./SessionLedger.js"
import { openToolCalls } from "./SessionLostTurns.js"
import * as Permissions from "./SessionPermissions.js"
import { rejected } from "./SessionRejections.js"
import {
  type Deps,
  eventsOf,
  HEAL_TIMER,
  heal,
  type Reaction,
  type ReportCommand,
  report,
  type SessionReply
} from "./SessionReports.js"
import { open as openSnapshots } from "./SessionSnapshots.js"

export type { SessionReply } from "./SessionReports.js"

const { ControlProtocol, NodeProtocol, SessionEvents, NodeHealthRecord } = Domain
type Snapshot = Domain.SessionSnapshot
type Row = Ledger.SessionRow
type State = Ledger.SessionState
type Command = EnvelopeOf<(typeof ControlProtocol.sessionCommands.defs)[number]>

export interface SessionActorOptions {
  /** the kind's name (`session`); tests use their own so that runs never share consumers or leases */
  readonly name?: string
  readonly shards?: number
  /** where `task.session-status` goes: the task kind's name and shard count */
  readonly task?: Pick<Actor.AnyActorKind, "name" | "shards">
  /** how often a `prompting` snapshot is checked for signs of life (default 15 s) */
  readonly healEvery?: Duration.DurationInput
  /**
   * how long `prompting` may go without any sign of life before its turn ends as lost (ADR 0021);
   * default `SAM_SESSION_LOST_AFTER_MS`, else 60 s
   */
  readonly staleAfter?: Duration.DurationInput
}

export const KIND = "session"

/**
 * The session actor (kind `session`, id `sess_…`): the session's row and transcript in Postgres, its
 * snapshot in KV `sam_session_state`, the node's session commands, and its domain events. Reports
 * from nodes arrive as `session.report` through the report ingress and are applied only when the
 * ledger places the session on the reporting node; anything else is dropped and audited.
 */
export const make = Effect.fn("SessionActor.make")(function* (options: SessionActorOptions = {}) {
  const snapshots = yield* openSnapshots()
  const health = yield* openHealth()
  const launch = yield* launches()
  const taskKind = options.task ?? TaskRef
  const healEvery = Duration.decode(options.healEvery ?? "15 seconds")
  const staleAfterMs =
    options.staleAfter !== undefined
      ? Duration.toMillis(Duration.decode(options.staleAfter))
      : yield* Config.integer("SAM_SESSION_LOST_AFTER_MS").pipe(Config.withDefault(60_000), Effect.orDie)
  const listeningSince = Date.now()
  return Actor.make({
    name: options.name ?? KIND,
    shards: options.shards ?? SessionRef.shards,
    id: SessionId,
    commands: ControlProtocol.sessionCommands.defs,
    load: (id, command) =>
      mayLoseTurn(command as Command)
        ? Ledger.load(id).pipe(
            Effect.zipWith(openToolCalls(id), (state, calls) => ({ ...state, openToolCalls: calls }))
          )
        : Ledger.load(id),
    save: (_id, state, previous) => Ledger.save(state, previous),
    // A run's reports are claimed in the inbox with the group's commands, in one statement.
    carriedIds: (command) =>
      command.type === "session.report-run"
        ? command.body.reports.map((r) => ({ id: r.id, type: "session.report" }))
        : undefined,
    // A transaction's saves in one statement, and its transcript entries of one session as batches.
    saveMany: (entries) => Ledger.saveStatements(entries),
    batchOutgoing: batchTranscript,
    // Its load and handler only read (a prompt's launch reads its agent's settings; snapshot writes are staged and
    // run after the commit), and its saves are statements: a group commits in one statement (ADR 0056).
    commitsInOneStatement: true,
    // A session's commands that wait together are applied in one transaction: each after the first starts
    // from the row the one before saved (the transcript and audit rows it wrote cleared), not from a reload.
    // One that may end a turn as lost loads, for the turn's open tool calls.
    // A state started from what was kept (below) has no task status: a command that needs it loads.
    carry: (state, command) =>
      mayLoseTurn(command as Command) ||
      state.row === null ||
      (state.taskEnded === undefined && !reusesKept(state.row, command as Command))
        ? undefined
        : Ledger.carried(state),
    // The agent's output, the live path's commands (issue 12), starts from the session's row as this process last
    // committed it: a statement less per event. What the state holds of other kinds' rows is not kept (it may
    // have changed since), and what needs it loads.
    keep: {
      remember: (state) => (state.row === null ? undefined : Ledger.ownPart(state)),
      reuse: (state, command) => (state.row !== null && reusesKept(state.row, command as Command) ? state : undefined)
    },
    // Snapshot writes are staged while handling and run after the commit (never ahead of the ledger).
    handle: (state, command, context) =>
      Effect.suspend(() => {
        snapshots.begin(context.id, context.transaction)
        return handle(
          {
            snapshots,
            health,
            taskKind,
            healEvery,
            staleAfterMs,
            listeningSince,
            launch,
            claimed: context.claimed,
            takeOver: context.takeOver
          },
          state,
          command as Command
        )
      }).pipe(
        Effect.map((reaction) => {
          const timed = sameTime(reaction, context.transactionAt ?? new Date().toISOString())
          return {
            ...timed,
            afterCommit: [...(reaction.afterCommit ?? []), ...snapshots.takeStaged(context.id)]
          }
        }),
        Trace.span("SessionActor.handle", () => ({
          captureStackTrace: false,
          attributes: { type: command.type, messageId: command.id }
        }))
      )
  })
})

export type SessionKind = Effect.Effect.Success<ReturnType<typeof make>>

/**
 * One time for the transcript entries a reaction adds: the rows store it and the `session.event`s that
 * publish them carry it, so a client sees the same time for an event live and read back after a
 * reconnect (the rows took the transaction's start, the events the moment each was made). It is the
 * transaction's (`ActorContext.transactionAt`): a batch of entries of several commands carries one time, that of each.
 */
const sameTime = (reaction: Reaction, time: string): Reaction => {
  if (reaction.state.transcript.length === 0) return reaction
  return {
    ...reaction,
    state: { ...reaction.state, transcriptAt: time },
    ...(reaction.events === undefined
      ? {}
      : {
          events: reaction.events.map((outgoing) =>
            outgoing.envelope.type === SessionEvents.SessionEventAppended.type
              ? { ...outgoing, envelope: { ...outgoing.envelope, at: time } }
              : outgoing
          )
        })
  }
}

/** A command that may end the turn in flight as lost needs that turn's open tool calls (ADR 0021). */
const mayLoseTurn = (command: Command) =>
  command.type === "session.heal" ||
  (command.type === "session.report" && reportsLostTurn(command.body.report)) ||
  (command.type === "session.report-run" && command.body.reports.some((r) => reportsLostTurn(r.report)))
const reportsLostTurn = (report: EnvelopeOf<typeof ControlProtocol.SessionReport>["body"]["report"]) =>
  report.type === "session.activity-reported" && report.body.stopReason === "lost"

/**
 * A report of the agent's output alone, with no permission request: what a session's state as this process last
 * committed it answers (`keep`). Its row is the session actor's alone; the rest of its state, its task's status
 * and its project's policy, is read from other kinds' rows, and such a report needs neither (the task's status
 * only once the session sleeps; the policy only for a permission request).
 */
const outputOnly = (report: EnvelopeOf<typeof ControlProtocol.SessionReport>["body"]["report"]) =>
  report.type === "session.event-reported"
    ? report.body.event.type !== "permission-requested"
    : report.type === "session.events-reported" &&
      report.body.events.every((e) => e.event.type !== "permission-requested")
const reusesKept = (row: Ledger.SessionRow, command: Command) =>
  row.status !== "sleeping" &&
  ((command.type === "session.report" && outputOnly(command.body.report)) ||
    (command.type === "session.report-run" && command.body.reports.every((r) => outputOnly(r.report))))

/** The latest heartbeat of a node, as the ingress stored it; none when missing or unreadable. */
const openHealth = () =>
  Effect.gen(function* () {
    const store = yield* Kv.open(Topology.Buckets.nodeHealth.name, NodeHealthRecord)
    return (nodeId: string) =>
      store.get(nodeId).pipe(
        Effect.map((entry) => (entry._tag === "Some" ? entry.value.value : undefined)),
        Effect.orElseSucceed(() => undefined)
      )
  })

const refuse = (state: State, code: Extract<SessionReply, { ok: false }>["code"], message: string): Reaction => ({
  state,
  reply: { ok: false, code, message } satisfies SessionReply
})

const nowIso = () => new Date().toISOString()

/**
 * The snapshot of a session that ended as `status` (slept, stopped, failed), as the control plane writes it:
 * nothing in flight, on what the snapshot held, never behind the row's epoch and `seq`.
 */
const settled =
  (r: Row, status: keyof typeof Domain.ENDED_SNAPSHOT, seq = r.lastSeq) =>
  (current: Domain.SessionSnapshot | undefined): Domain.SessionSnapshot => ({
    ...Domain.ENDED_SNAPSHOT[status],
    promptStartedAt: null,
    promptEpoch: Math.max(current?.promptEpoch ?? 0, r.promptEpoch),
    plan: current?.plan ?? null,
    source: "control_plane",
    lastSeq: Math.max(current?.lastSeq ?? 0, seq),
    step: current?.step ?? null,
    updatedAt: nowIso()
  })

/**
 * Reports applied one by one in one transaction (a `session.events` run, or a `session.report-run`;
 * issue 12): their transcript entries, events, commands and timers kept in order; the snapshot is
 * written once, after commit.
 */
const applyRun = (
  state: State,
  singles: ReadonlyArray<ReportCommand>,
  one: (current: State, single: ReportCommand) => Effect.Effect<Reaction, unknown>
): Effect.Effect<Reaction, unknown> =>
  Effect.gen(function* () {
    let current = state
    const transcript: Array<Ledger.TranscriptEntry> = []
    const dropped: Array<Ledger.DroppedReport> = []
    const events: Array<Actor.Outgoing> = []
    const send: Array<Actor.Outgoing> = []
    const timers: Array<Actor.TimerInstruction> = []
    const afterCommit: Array<Effect.Effect<void, unknown>> = []
    let reply: unknown
    for (const single of singles) {
      const reaction = yield* one({ ...current, transcript: [], dropped: [] }, single)
      current = reaction.state
      transcript.push(...reaction.state.transcript)
      dropped.push(...reaction.state.dropped)
      events.push(...(reaction.events ?? []))
      send.push(...(reaction.send ?? []))
      timers.push(...(reaction.timers ?? []))
      afterCommit.push(...(reaction.afterCommit ?? []))
      reply = reaction.reply
    }
    return { state: { ...current, transcript, dropped }, events, send, timers, afterCommit, reply } satisfies Reaction
  })

const handle = (
  deps: Deps & {
    readonly launch: Launches
    /** the reports of a `session.report-run` new to the inbox, claimed with its group's commands (`carriedIds`) */
    readonly claimed: ReadonlySet<string> | undefined
    readonly takeOver: ((messageId: string, type: string) => boolean) | undefined
  },
  state: State,
  command: Command
): Effect.Effect<Reaction, unknown> => {
  const row = state.row
  const meta = { causationId: command.id, correlationId: command.correlationId ?? command.id }
  const toNode = (nodeId: string, envelope: Envelope): Actor.Outgoing => ({
    subject: Subjects.nodeCommand(nodeId, envelope.type),
    envelope
  })
  const event = (r: Row, envelope: Envelope) => Actor.event(r.projectId, KIND, r.id, envelope)
  const activityEvent = (r: Row, snapshot: Snapshot) =>
    event(r, SessionEvents.SessionActivityChanged.make({ sessionId: r.id, snapshot }, meta))
  const toTask = (
    r: Row,
    status: "running" | "failed" | "awaiting_followup" | "stopped" | "turn_ended",
    reason?: string
  ) =>
    r.taskId === null
      ? []
      : [
          Actor.to(
            deps.taskKind,
            r.taskId,
            ControlProtocol.TaskSessionStatus.make(
              { taskId: r.taskId, sessionId: r.id, status, ...(reason === undefined ? {} : { reason }) },
              meta
            )
          )
        ]
  const healTimer = (sessionId: string) =>
    Actor.Timer.set(HEAL_TIMER, deps.healEvery, ControlProtocol.SessionHeal.make({ sessionId }, meta))
  const bump = (r: Row, change: Partial<Row>): Row => ({ ...r, ...change, version: r.version + 1 })

  /**
   * Fail the session: row failed, snapshot not prompting, the node told to stop, `session.failed`, and
   * a last transcript entry (`failed`, by the control plane) that says why (ADR 0019).
   */
  const fail = (
    r: Row,
    reason: string,
    extra: { events?: Array<Actor.Outgoing>; send?: Array<Actor.Outgoing>; unopened?: true }
  ) =>
    Effect.gen(function* () {
      const seq = r.lastSeq + 1
      const written = yield* deps.snapshots.write(r.id, settled(r, "failed", seq))
      const next = bump(r, { status: "failed", errorReason: reason, endedAt: new Date(), lastSeq: seq })
      const said: Domain.SessionEventOf<"failed"> = { type: "failed", reason, source: "control_plane" }
      const entry = Ledger.ownEntry(seq, said, r.promptEpoch, command.id)
      return {
        state: { ...state, row: next, transcript: [...state.transcript, entry] },
        events: [
          ...(extra.events ?? []),
          event(
            next,
            SessionEvents.SessionEventAppended.make(
              { sessionId: r.id, seq, promptEpoch: r.promptEpoch, event: said },
              meta
            )
          ),
          ...(written.snapshot === undefined ? [] : [activityEvent(next, written.snapshot)]),
          event(next, SessionEvents.SessionFailed.make({ sessionId: r.id, reason }, meta))
        ],
        send: [
          ...(extra.send ?? []),
          // A session never opened has nothing on its node to stop.
          ...(r.nodeId === null || extra.unopened === true
            ? []
            : [toNode(r.nodeId, NodeProtocol.SessionStop.make({ sessionId: r.id }, meta))])
        ],
        timers: [Actor.Timer.cancel(HEAL_TIMER)],
        reply: { ok: true } satisfies SessionReply
      } satisfies Reaction
    })

  const terminal = (r: Row) =>
    r.status === "failed"
      ? refuse(
          state,
          "session_failed",
          `session ${r.id} has failed${r.errorReason === null ? "" : ` (${r.errorReason})`} and takes no more commands; start a new session`
        )
      : r.status === "stopped"
        ? refuse(
            state,
            "session_stopped",
            `session ${r.id} was stopped and takes no more commands; start a new session`
          )
        : undefined

  const sleeping = (r: Row) =>
    r.status === "sleeping"
      ? refuse(
          state,
          "session_sleeping",
          `session ${r.id} is sleeping: its task completed and its agent was stopped to give its memory back; start a new task to go on from its branch`
        )
      : undefined

  /**
   * Its task completed (ADR 0023): the node stops the agent process; the session's files and the branch
   * stay in the workspace, and it takes no prompt. Idempotent, and a session that ended keeps how it ended.
   */
  const sleep = (r: Row, reason: string) => {
    const transition = Domain.sessionTransition(r.status, "sleeping")
    if (transition._tag !== "Allowed")
      return Effect.succeed<Reaction>({ state, reply: { ok: true, duplicate: true } satisfies SessionReply })
    return Effect.gen(function* () {
      const written = yield* deps.snapshots.write(r.id, settled(r, "sleeping"))
      const next = bump(r, { status: "sleeping" })
      return {
        state: { ...state, row: next },
        send: r.nodeId === null ? [] : [toNode(r.nodeId, NodeProtocol.SessionStop.make({ sessionId: r.id }, meta))],
        events: [
          ...(written.snapshot === undefined ? [] : [activityEvent(next, written.snapshot)]),
          event(next, SessionEvents.SessionSlept.make({ sessionId: r.id, reason }, meta))
        ],
        timers: [Actor.Timer.cancel(HEAL_TIMER)],
        reply: { ok: true } satisfies SessionReply
      } satisfies Reaction
    })
  }

  /**
   * The snapshot says what the row says (`session.check-snapshot`): a snapshot write is stored after its
   * command commits, so a control plane stopped in between (or NATS away then) lost it. An ended session's
   * snapshot is written again as it ended; one still shown working is handed to the healer, whose timer
   * the lost write's command may have cancelled, to end its turn on the node's evidence.
   */
  const checkSnapshot = (r: Row | null) =>
    Effect.gen(function* () {
      if (r === null) return { state } satisfies Reaction
      const current = yield* deps.snapshots.get(r.id)
      const working = current !== undefined && Domain.WORKING_ACTIVITIES.has(current.activity)
      if (r.status === "active") return { state, ...(working ? { timers: [healTimer(r.id)] } : {}) } satisfies Reaction
      if (current?.activity === Domain.ENDED_SNAPSHOT[r.status].activity) return { state } satisfies Reaction
      const written = yield* deps.snapshots.write(r.id, settled(r, r.status))
      return {
        state,
        events: written.snapshot === undefined ? [] : [activityEvent(r, written.snapshot)]
      } satisfies Reaction
    })

  const helpers = { meta, event, activityEvent, toTask, healTimer, bump, fail }
  /** One node report (one event or activity) applied, then its permission follow-ups. */
  const one = (current: State, single: ReportCommand) =>
    report(deps, current, single, helpers).pipe(
      Effect.flatMap((reaction) => Permissions.afterReport(deps, single, reaction, helpers))
    )
  switch (command.type) {
    case "session.open": {
      const body = command.body
      if (row !== null) return Effect.succeed({ state, reply: { ok: true, duplicate: true } satisfies SessionReply })
      return Effect.gen(function* () {
        const next: Row = {
          id: body.sessionId,
          projectId: body.projectId,
          workspaceId: body.workspaceId,
          taskId: body.taskId ?? null,
          nodeId: body.nodeId,
          agent: body.agent,
          mode: body.mode,
          status: "active",
          acpSessionId: null,
          promptEpoch: 1,
          lastSeq: 0,
          errorReason: null,
          runningReportedAt: null,
          lastEvidenceAt: null,
          endedAt: null,
          version: 1
        }
        const at = nowIso()
        const written = yield* deps.snapshots.write(body.sessionId, () => ({
          activity: "prompting",
          promptStartedAt: at,
          promptEpoch: 1,
          plan: null,
          source: "control_plane",
          reason: null,
          lastSeq: 0,
          step: null,
          updatedAt: at
        }))
        const { sessionId, projectId, workspaceId, nodeId, agent, mode } = body
        const taskId = body.taskId === undefined ? {} : { taskId: body.taskId }
        // credential, runtime assets and profile, sealed to the node's key (ADR 0024)
        const launch = yield* deps.launch({
          taskId: body.taskId,
          projectId,
          agent,
          xkey: (yield* deps.health(nodeId))?.xkey
        })
        return {
          state: { ...state, row: next },
          send: [
            toNode(
              nodeId,
              NodeProtocol.SessionStart.make(
                { sessionId, workspaceId, agent, mode, prompt: body.prompt, ...taskId, ...(launch ? { launch } : {}) },
                meta
              )
            )
          ],
          events: [
            event(
              next,
              SessionEvents.SessionOpened.make(
                { sessionId, projectId, workspaceId, nodeId, agent, mode, ...taskId },
                meta
              )
            ),
            ...(written.snapshot === undefined ? [] : [activityEvent(next, written.snapshot)])
          ],
          timers: [healTimer(sessionId)],
          reply: { ok: true, promptEpoch: 1 } satisfies SessionReply
        } satisfies Reaction
      })
    }
    case "session.user-prompt": {
      if (row === null) return Effect.succeed(refuse(state, "not_found", `no session ${command.body.sessionId}`))
      const refused =
        terminal(row) ??
        sleeping(row) ??
        (state.taskEnded === true
          ? refuse(
              state,
              "invalid_transition",
              `session ${row.id} belongs to task ${row.taskId}, which has ended; its transcript is final`
            )
          : undefined)
      if (refused !== undefined || row.nodeId === null) {
        return Effect.succeed(refused ?? refuse(state, "not_found", `session ${row.id} is on no node`))
      }
      const nodeId = row.nodeId
      return Effect.gen(function* () {
        const promptEpoch = row.promptEpoch + 1
        const at = nowIso()
        const prompt = command.body.prompt
        const before = yield* deps.snapshots.get(row.id)
        /** a turn is in progress: this prompt waits for it, and the transcript says so until its turn begins */
        const queued = before !== undefined && Domain.WORKING_ACTIVITIES.has(before.activity)
        if (queued && row.mode === "task")
          return refuse(
            state,
            "invalid_transition",
            `session ${row.id} runs a task, which ends when the agent finishes this turn: a follow-up sent now would never be answered. Interrupt the turn to add to it, or start a new task`
          )
        const seq = row.lastSeq + 1
        const written = yield* deps.snapshots.write(row.id, (current) => ({
          activity: "prompting",
          // a prompt that waits behind a turn in progress keeps the time the agent has been working since
          promptStartedAt:
            current !== undefined && Domain.WORKING_ACTIVITIES.has(current.activity) && current.promptStartedAt !== null
              ? current.promptStartedAt
              : at,
          promptEpoch,
          plan: current?.plan ?? null,
          source: "control_plane",
          reason: null,
          lastSeq: Math.max(current?.lastSeq ?? 0, queued ? seq : row.lastSeq),
          step: current?.step ?? null,
          updatedAt: at
        }))
        const said: Domain.SessionEventOf<"prompt-queued"> = {
          type: "prompt-queued",
          text: prompt,
          source: "control_plane"
        }
        const entry = Ledger.ownEntry(seq, said, promptEpoch, command.id)
        const next = bump(row, queued ? { promptEpoch, lastSeq: seq } : { promptEpoch })
        return {
          state: { ...state, row: next, ...(queued ? { transcript: [...state.transcript, entry] } : {}) },
          send: [toNode(nodeId, NodeProtocol.SessionPrompt.make({ sessionId: row.id, prompt, promptEpoch }, meta))],
          events: [
            event(next, SessionEvents.SessionPromptAccepted.make({ sessionId: row.id, promptEpoch, prompt }, meta)),
            ...(queued
              ? [
                  event(
                    next,
                    SessionEvents.SessionEventAppended.make({ sessionId: row.id, seq, promptEpoch, event: said }, meta)
                  )
                ]
              : []),
            ...(written.snapshot === undefined ? [] : [activityEvent(next, written.snapshot)])
          ],
          timers: [healTimer(row.id)],
          reply: { ok: true, promptEpoch } satisfies SessionReply
        } satisfies Reaction
      })
    }
    case "session.user-cancel": {
      if (row === null) return Effect.succeed(refuse(state, "not_found", `no session ${command.body.sessionId}`))
      const refused = terminal(row) ?? sleeping(row)
      if (refused !== undefined || row.nodeId === null) {
        return Effect.succeed(refused ?? refuse(state, "not_found", `session ${row.id} is on no node`))
      }
      const nodeId = row.nodeId
      // Nothing in flight (the snapshot is what the actor wrote for a prompt it sent, or the node's
      // word since): the answer says so and the node is not asked.
      return deps.snapshots.get(row.id).pipe(
        Effect.map((snapshot): Reaction => {
          const inFlight = snapshot !== undefined && Domain.WORKING_ACTIVITIES.has(snapshot.activity)
          const reply: SessionReply = {
            ok: true,
            promptEpoch: row.promptEpoch,
            status: inFlight ? "cancelling" : "idle"
          }
          if (!inFlight) return { state, reply }
          return { state, send: [toNode(nodeId, NodeProtocol.SessionCancel.make({ sessionId: row.id }, meta))], reply }
        })
      )
    }
    case "session.user-stop": {
      if (row === null) return Effect.succeed(refuse(state, "not_found", `no session ${command.body.sessionId}`))
      // A workspace stopped (its files kept) while its completed task's sleep was on its way: the session sleeps
      // there, as it would have a moment later, rather than ending as stopped.
      if (command.body.from === "workspace" && command.body.keepsFiles === true && state.taskCompleted === true)
        return sleep(row, "its task completed")
      const transition = Domain.sessionTransition(row.status, "stopped")
      if (transition._tag === "Unchanged") return Effect.succeed({ state, reply: { ok: true, duplicate: true } })
      if (transition._tag === "Refused") return Effect.succeed(refuse(state, "invalid_transition", transition.message))
      const reason = command.body.reason
      return Effect.gen(function* () {
        const written = yield* deps.snapshots.write(row.id, settled(row, "stopped"))
        const next = bump(row, { status: "stopped", endedAt: new Date() })
        // A stop that came neither from its task nor from its workspace ends the task (ADR 0019).
        const endsTask = command.body.from !== "task" && command.body.from !== "workspace" && state.taskEnded !== true
        return {
          state: { ...state, row: next },
          send: [
            ...(row.nodeId === null
              ? []
              : [toNode(row.nodeId, NodeProtocol.SessionStop.make({ sessionId: row.id }, meta))]),
            ...(endsTask ? toTask(next, "stopped", reason) : [])
          ],
          events: [
            ...(written.snapshot === undefined ? [] : [activityEvent(next, written.snapshot)]),
            event(
              next,
              SessionEvents.SessionStopped.make(
                { sessionId: row.id, ...(reason === undefined ? {} : { reason }) },
                meta
              )
            )
          ],
          timers: [Actor.Timer.cancel(HEAL_TIMER)],
          reply: { ok: true } satisfies SessionReply
        } satisfies Reaction
      })
    }
    case "session.sleep": {
      if (row === null) return Effect.succeed(refuse(state, "not_found", `no session ${command.body.sessionId}`))
      return sleep(row, command.body.reason)
    }
    case "session.fail": {
      const unopened = command.body.unopened
      if (row === null && unopened !== undefined) {
        // The task failed before this session was opened: record it, failed, with its event.
        return fail(
          {
            id: command.body.sessionId,
            projectId: unopened.projectId,
            workspaceId: unopened.workspaceId,
            taskId: unopened.taskId,
            nodeId: unopened.nodeId,
            agent: unopened.agent,
            mode: unopened.mode,
            status: "active",
            acpSessionId: null,
            promptEpoch: 0,
            lastSeq: 0,
            errorReason: null,
            runningReportedAt: null,
            lastEvidenceAt: null,
            endedAt: null,
            version: 0
          },
          command.body.reason,
          { unopened: true }
        )
      }
      if (row === null) return Effect.succeed(refuse(state, "not_found", `no session ${command.body.sessionId}`))
      // Idempotent: a session that already ended keeps how it ended.
      if (row.status === "failed" || row.status === "stopped") {
        return Effect.succeed({ state, reply: { ok: true, duplicate: true } satisfies SessionReply })
      }
      return fail(row, command.body.reason, {})
    }
    case "session.report": {
      const singles = eventsOf(command)
      if (singles.length === 1) return one(state, singles[0]!)
      return applyRun(state, singles, one)
    }
    case "session.report-run": {
      const { nodeId, sessionId, reports } = command.body
      if (sessionId !== row?.id && row !== null)
        return Effect.succeed(refuse(state, "dropped", `a run for ${sessionId} sent to ${row.id}`))
      // Each report is applied once, whatever run it came in: its id is claimed in the inbox, with the group's
      // commands (`carriedIds`).
      if (deps.claimed === undefined) return Effect.dieMessage("a session.report-run without its claimed reports")
      const fresh = new Set(deps.claimed)
      // A report whose id a later command of this group commit carries (the same report sent alone, behind
      // this run) was claimed for that command, not applied: applied here, in its order, and that one is
      // then a repeat. Applied later instead, it would come after the reports that followed it.
      for (const { id } of reports) if (!fresh.has(id) && deps.takeOver?.(id, "session.report")) fresh.add(id)
      // A report stored twice in SAM_AGENT may come twice in one run: applied the first time only.
      const singles = reports
        .filter((r) => fresh.delete(r.id))
        .flatMap((r) =>
          eventsOf({
            ...command,
            id: r.id,
            type: "session.report",
            body: { nodeId, report: r.report }
          } as EnvelopeOf<typeof ControlProtocol.SessionReport>)
        )
      if (singles.length === 0)
        return Effect.succeed({ state, reply: { ok: true, duplicate: true } satisfies SessionReply } as Reaction)
      return applyRun(state, singles, one)
    }
    case "session.heal":
      return heal(deps, state, command, helpers)
    case "session.check-snapshot":
      return checkSnapshot(row)
    case "session.command-rejected":
      return rejected(deps, state, command, helpers)
    case "session.answer-permission":
    case "session.permission-timeout":
      return Permissions.answer(deps, state, command, helpers)
  }
}
