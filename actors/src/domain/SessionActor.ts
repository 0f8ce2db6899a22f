import { Domain, type Envelope, type EnvelopeOf, Kv, SessionId, Subjects, Topology } from "@sam/bus"
import { Duration, Effect } from "effect"
import * as Actor from "../ActorKind.js"
import { DEFAULT_SHARDS } from "../ActorKind.js"
import * as Ledger from "./SessionLedger.js"
import { open as openSnapshots, reportIsCurrent, type SessionSnapshots } from "./SessionSnapshots.js"

const { ControlProtocol, NodeProtocol, SessionEvents, NodeHealthRecord } = Domain
type Snapshot = Domain.SessionSnapshot
type Row = Ledger.SessionRow
type State = Ledger.SessionState
type Command = EnvelopeOf<(typeof ControlProtocol.sessionCommands.defs)[number]>
type ReportCommand = EnvelopeOf<typeof ControlProtocol.SessionReport>

/** The answer to an `ask`: refusals are data with a code a caller can act on and a message a user can read. */
export type SessionReply =
  | { readonly ok: true; readonly promptEpoch?: number; readonly duplicate?: boolean }
  | {
      readonly ok: false
      readonly code: "not_found" | "session_failed" | "session_stopped" | "invalid_transition" | "dropped"
      readonly message: string
    }

export interface SessionActorOptions {
  /** the kind's name (`session`); tests use their own so that runs never share consumers or leases */
  readonly name?: string
  readonly shards?: number
  /** where `task.session-status` goes: the task kind's name and shard count */
  readonly task?: Pick<Actor.AnyActorKind, "name" | "shards">
  /** how often a `prompting` snapshot is checked for signs of life (default 30 s) */
  readonly healEvery?: Duration.DurationInput
  /** how long `prompting` may go without any evidence of life before it is healed to idle (default 5 min) */
  readonly staleAfter?: Duration.DurationInput
}

export const KIND = "session"
const HEAL_TIMER = "heal"

/**
 * The session actor (kind `session`, id `sess_…`): the session's row and transcript in Postgres, its
 * snapshot in KV `sam_session_state`, the node's session commands, and its domain events. Reports
 * from nodes arrive as `session.report` through the report ingress and are applied only when the
 * ledger places the session on the reporting node; anything else is dropped and audited.
 */
export const make = Effect.fn("SessionActor.make")(function* (options: SessionActorOptions = {}) {
  const snapshots = yield* openSnapshots()
  const health = yield* openHealth()
  const taskKind = options.task ?? { name: "task", shards: DEFAULT_SHARDS }
  const healEvery = Duration.decode(options.healEvery ?? "30 seconds")
  const staleAfterMs = Duration.toMillis(Duration.decode(options.staleAfter ?? "5 minutes"))
  return Actor.make({
    name: options.name ?? KIND,
    shards: options.shards ?? DEFAULT_SHARDS,
    id: SessionId,
    commands: ControlProtocol.sessionCommands.defs,
    load: (id) => Ledger.load(id),
    save: (_id, state, previous) => Ledger.save(state, previous),
    handle: (state, command) =>
      handle({ snapshots, health, taskKind, healEvery, staleAfterMs }, state, command as Command).pipe(
        Effect.withSpan("SessionActor.handle", { attributes: { type: command.type, messageId: command.id } })
      )
  })
})

export type SessionKind = Effect.Effect.Success<ReturnType<typeof make>>

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

interface Deps {
  readonly snapshots: SessionSnapshots
  readonly health: (nodeId: string) => Effect.Effect<Domain.NodeHealthRecord | undefined>
  readonly taskKind: Pick<Actor.AnyActorKind, "name" | "shards">
  readonly healEvery: Duration.Duration
  readonly staleAfterMs: number
}

type Reaction = Actor.Reaction<State>

const refuse = (state: State, code: Extract<SessionReply, { ok: false }>["code"], message: string): Reaction => ({
  state,
  reply: { ok: false, code, message } satisfies SessionReply
})

const nowIso = () => new Date().toISOString()

const handle = (deps: Deps, state: State, command: Command): Effect.Effect<Reaction, unknown> => {
  const row = state.row
  const meta = { causationId: command.id, correlationId: command.correlationId ?? command.id }
  const toNode = (nodeId: string, envelope: Envelope): Actor.Outgoing => ({
    subject: Subjects.nodeCommand(nodeId, envelope.type),
    envelope
  })
  const event = (r: Row, envelope: Envelope) => Actor.event(r.projectId, KIND, r.id, envelope)
  const activityEvent = (r: Row, snapshot: Snapshot) =>
    event(r, SessionEvents.SessionActivityChanged.make({ sessionId: r.id, snapshot }, meta))
  const toTask = (r: Row, status: "running" | "failed" | "awaiting_followup", reason?: string) =>
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

  /** Fail the session: row failed, snapshot not prompting, the node told to stop, `session.failed`. */
  const fail = (r: Row, reason: string, extra: { events?: Array<Actor.Outgoing>; send?: Array<Actor.Outgoing> }) =>
    Effect.gen(function* () {
      const at = nowIso()
      const written = yield* deps.snapshots.write(r.id, (current) => ({
        activity: "error",
        promptStartedAt: null,
        promptEpoch: Math.max(current?.promptEpoch ?? 0, r.promptEpoch),
        plan: current?.plan ?? null,
        source: "control_plane",
        reason: "failed",
        lastSeq: Math.max(current?.lastSeq ?? 0, r.lastSeq),
        step: current?.step ?? null,
        updatedAt: at
      }))
      const next = bump(r, { status: "failed", errorReason: reason, endedAt: new Date() })
      return {
        state: { ...state, row: next },
        events: [
          ...(extra.events ?? []),
          ...(written.snapshot === undefined ? [] : [activityEvent(next, written.snapshot)]),
          event(next, SessionEvents.SessionFailed.make({ sessionId: r.id, reason }, meta))
        ],
        send: [
          ...(extra.send ?? []),
          ...(r.nodeId === null ? [] : [toNode(r.nodeId, NodeProtocol.SessionStop.make({ sessionId: r.id }, meta))])
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
        return {
          state: { ...state, row: next },
          send: [
            toNode(
              nodeId,
              NodeProtocol.SessionStart.make(
                { sessionId, workspaceId, agent, mode, prompt: body.prompt, ...taskId },
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
      const refused = terminal(row)
      if (refused !== undefined || row.nodeId === null) {
        return Effect.succeed(refused ?? refuse(state, "not_found", `session ${row.id} is on no node`))
      }
      const nodeId = row.nodeId
      return Effect.gen(function* () {
        const promptEpoch = row.promptEpoch + 1
        const at = nowIso()
        const written = yield* deps.snapshots.write(row.id, (current) => ({
          activity: "prompting",
          promptStartedAt: at,
          promptEpoch,
          plan: current?.plan ?? null,
          source: "control_plane",
          reason: null,
          lastSeq: Math.max(current?.lastSeq ?? 0, row.lastSeq),
          step: current?.step ?? null,
          updatedAt: at
        }))
        const next = bump(row, { promptEpoch })
        const prompt = command.body.prompt
        return {
          state: { ...state, row: next },
          send: [toNode(nodeId, NodeProtocol.SessionPrompt.make({ sessionId: row.id, prompt, promptEpoch }, meta))],
          events: [
            event(next, SessionEvents.SessionPromptAccepted.make({ sessionId: row.id, promptEpoch, prompt }, meta)),
            ...(written.snapshot === undefined ? [] : [activityEvent(next, written.snapshot)])
          ],
          timers: [healTimer(row.id)],
          reply: { ok: true, promptEpoch } satisfies SessionReply
        } satisfies Reaction
      })
    }
    case "session.user-cancel": {
      if (row === null) return Effect.succeed(refuse(state, "not_found", `no session ${command.body.sessionId}`))
      const refused = terminal(row)
      if (refused !== undefined || row.nodeId === null) {
        return Effect.succeed(refused ?? refuse(state, "not_found", `session ${row.id} is on no node`))
      }
      return Effect.succeed({
        state,
        send: [toNode(row.nodeId, NodeProtocol.SessionCancel.make({ sessionId: row.id }, meta))],
        reply: { ok: true, promptEpoch: row.promptEpoch } satisfies SessionReply
      })
    }
    case "session.user-stop": {
      if (row === null) return Effect.succeed(refuse(state, "not_found", `no session ${command.body.sessionId}`))
      const transition = Domain.sessionTransition(row.status, "stopped")
      if (transition._tag === "Unchanged") return Effect.succeed({ state, reply: { ok: true, duplicate: true } })
      if (transition._tag === "Refused") return Effect.succeed(refuse(state, "invalid_transition", transition.message))
      const reason = command.body.reason
      return Effect.gen(function* () {
        const at = nowIso()
        const written = yield* deps.snapshots.write(row.id, (current) => ({
          activity: "stopped",
          promptStartedAt: null,
          promptEpoch: Math.max(current?.promptEpoch ?? 0, row.promptEpoch),
          plan: current?.plan ?? null,
          source: "control_plane",
          reason: "force_stopped",
          lastSeq: Math.max(current?.lastSeq ?? 0, row.lastSeq),
          step: current?.step ?? null,
          updatedAt: at
        }))
        const next = bump(row, { status: "stopped", endedAt: new Date() })
        return {
          state: { ...state, row: next },
          send:
            row.nodeId === null ? [] : [toNode(row.nodeId, NodeProtocol.SessionStop.make({ sessionId: row.id }, meta))],
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
    case "session.fail": {
      if (row === null) return Effect.succeed(refuse(state, "not_found", `no session ${command.body.sessionId}`))
      // Idempotent: a session that already ended keeps how it ended.
      if (row.status === "failed" || row.status === "stopped") {
        return Effect.succeed({ state, reply: { ok: true, duplicate: true } satisfies SessionReply })
      }
      return fail(row, command.body.reason, {})
    }
    case "session.report":
      return report(deps, state, command, { meta, event, activityEvent, toTask, healTimer, bump, fail })
    case "session.heal":
      return heal(deps, state, { event, activityEvent, healTimer })
  }
}

interface Helpers {
  readonly meta: { readonly causationId: string; readonly correlationId: string }
  readonly event: (r: Row, envelope: Envelope) => Actor.Outgoing
  readonly activityEvent: (r: Row, snapshot: Snapshot) => Actor.Outgoing
  readonly toTask: (
    r: Row,
    status: "running" | "failed" | "awaiting_followup",
    reason?: string
  ) => ReadonlyArray<Actor.Outgoing>
  readonly healTimer: (sessionId: string) => Actor.TimerInstruction
  readonly bump: (r: Row, change: Partial<Row>) => Row
  readonly fail: (
    r: Row,
    reason: string,
    extra: { events?: Array<Actor.Outgoing>; send?: Array<Actor.Outgoing> }
  ) => Effect.Effect<Reaction, unknown>
}

const report = (deps: Deps, state: State, command: ReportCommand, h: Helpers): Effect.Effect<Reaction, unknown> => {
  const { nodeId, report } = command.body
  const row = state.row
  if (row === null || row.nodeId !== nodeId) {
    const reason = row === null ? "unknown_session" : "session_not_on_node"
    const dropped: Ledger.DroppedReport = {
      nodeId,
      subject: null,
      type: report.type,
      entityId: report.body.sessionId,
      messageId: command.id,
      reason,
      payload: JSON.stringify(report.body)
    }
    return Effect.logWarning(
      `dropped ${report.type} from ${nodeId} for session ${report.body.sessionId}: ${reason}`
    ).pipe(
      Effect.as({
        state: { ...state, dropped: [dropped] },
        reply: {
          ok: false,
          code: "dropped",
          message: `session ${report.body.sessionId} is not placed on node ${nodeId}`
        } satisfies SessionReply
      })
    )
  }
  if (report.type === "session.event") {
    return Effect.gen(function* () {
      const body = report.body
      const seq = row.lastSeq + 1
      const agentStarted = body.event.type === "agent-started" && typeof body.event.acpSessionId === "string"
      const next = h.bump(row, {
        lastSeq: seq,
        lastEvidenceAt: new Date(),
        ...(agentStarted ? { acpSessionId: body.event.acpSessionId as string } : {})
      })
      const entries = body.event.type === "plan" ? body.event.entries : undefined
      const plan = Array.isArray(entries) ? Domain.SessionSnapshot.shape.plan.safeParse(entries) : undefined
      yield* deps.snapshots.write(row.id, (current) =>
        current === undefined
          ? undefined
          : {
              ...current,
              lastSeq: Math.max(current.lastSeq, seq),
              ...(plan?.success === true ? { plan: plan.data } : {})
            }
      )
      const appended = h.event(
        next,
        SessionEvents.SessionEventAppended.make(
          { sessionId: row.id, seq, promptEpoch: body.promptEpoch, nodeSeq: body.nodeSeq, event: body.event },
          h.meta
        )
      )
      const entry: Ledger.TranscriptEntry = {
        seq,
        type: body.event.type,
        payload: body.event,
        nodeSeq: body.nodeSeq,
        promptEpoch: body.promptEpoch,
        reportId: command.id
      }
      const withEntry: State = { ...state, row: next, transcript: [entry] }
      // The agent could not be kept alive: the session fails, and with it its task (sam-protocols §1).
      if (body.event.type === "failed" && next.status !== "failed" && next.status !== "stopped") {
        const reason = `agent failed: ${typeof body.event.reason === "string" ? body.event.reason : "no reason given"}`
        const failed = yield* h.fail(next, reason, { events: [appended] })
        return {
          ...failed,
          state: { ...failed.state, transcript: [entry] },
          send: [...(failed.send ?? []), ...h.toTask(next, "failed", reason)]
        }
      }
      return { state: withEntry, events: [appended], reply: { ok: true } satisfies SessionReply }
    })
  }
  return Effect.gen(function* () {
    const body = report.body
    const ended = row.status === "failed" || row.status === "stopped"
    let next = h.bump(row, {
      lastEvidenceAt: new Date(),
      ...(body.acpSessionId === undefined ? {} : { acpSessionId: body.acpSessionId })
    })
    const written = yield* deps.snapshots.write(row.id, (current) => {
      // An ended session never shows working again; an older report never replaces a newer one.
      if (ended || !reportIsCurrent(current, body.promptEpoch, body.observedAt)) return undefined
      const sameSpell = current?.activity === body.activity && current.promptEpoch === body.promptEpoch
      return {
        activity: body.activity,
        promptStartedAt: body.activity === "prompting" ? (sameSpell ? current.promptStartedAt : body.observedAt) : null,
        promptEpoch: body.promptEpoch,
        plan: current?.plan ?? null,
        source: "vm_report",
        reason:
          body.activity === "idle"
            ? body.stopReason === "cancelled"
              ? "cancelled"
              : "completed"
            : body.activity === "error"
              ? "failed"
              : null,
        lastSeq: Math.max(current?.lastSeq ?? 0, row.lastSeq),
        step: current?.step ?? null,
        updatedAt: body.observedAt
      }
    })
    const send: Array<Actor.Outgoing> = []
    if (!ended && body.activity === "prompting" && row.runningReportedAt === null && row.taskId !== null) {
      next = { ...next, runningReportedAt: new Date() }
      send.push(...h.toTask(next, "running"))
    }
    if (
      written.written &&
      body.activity === "idle" &&
      body.stopReason === "end_turn" &&
      row.mode === "conversation" &&
      !ended
    ) {
      send.push(...h.toTask(next, "awaiting_followup"))
    }
    const working = written.snapshot !== undefined && Domain.WORKING_ACTIVITIES.has(written.snapshot.activity)
    return {
      state: { ...state, row: next },
      send,
      events: written.written && written.snapshot !== undefined ? [h.activityEvent(next, written.snapshot)] : [],
      timers: written.written ? [working ? h.healTimer(row.id) : Actor.Timer.cancel(HEAL_TIMER)] : [],
      reply: { ok: true } satisfies SessionReply
    } satisfies Reaction
  })
}

const heal = (
  deps: Deps,
  state: State,
  h: Pick<Helpers, "event" | "activityEvent" | "healTimer">
): Effect.Effect<Reaction, unknown> =>
  Effect.gen(function* () {
    const row = state.row
    if (row === null || row.status === "failed" || row.status === "stopped") return { state }
    const current = yield* deps.snapshots.get(row.id)
    if (current === undefined || !Domain.WORKING_ACTIVITIES.has(current.activity)) return { state }
    const cutoff = Date.now() - deps.staleAfterMs
    const node = row.nodeId === null ? undefined : yield* deps.health(row.nodeId)
    const evidence =
      Date.parse(current.updatedAt) > cutoff ||
      (row.lastEvidenceAt !== null && row.lastEvidenceAt.getTime() > cutoff) ||
      (node !== undefined && Date.parse(node.receivedAt) > cutoff && node.promptingSessions.includes(row.id as never))
    if (evidence) return { state, timers: [h.healTimer(row.id)] }
    const at = new Date().toISOString()
    const written = yield* deps.snapshots.write(row.id, (latest) =>
      latest === undefined || !Domain.WORKING_ACTIVITIES.has(latest.activity)
        ? undefined
        : {
            ...latest,
            activity: "idle",
            promptStartedAt: null,
            source: "healer",
            reason: "stale_no_evidence",
            updatedAt: at
          }
    )
    yield* Effect.logWarning(`healed session ${row.id}: prompting with no evidence of life, now idle`)
    return {
      state,
      events: written.written && written.snapshot !== undefined ? [h.activityEvent(row, written.snapshot)] : []
    }
  })
