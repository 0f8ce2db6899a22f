import { Domain, type Envelope, type EnvelopeOf, Subjects } from "@sam/bus"
import { Duration, Effect } from "effect"
import * as Actor from "../ActorKind.js"
import { HEARTBEAT_FRESH_SECONDS } from "./Kinds.js"
import type * as Ledger from "./SessionLedger.js"
import { endLost } from "./SessionLostTurns.js"
import { reportIsCurrent, type SessionSnapshots } from "./SessionSnapshots.js"

/**
 * The session actor's handling of what nodes report (`session.report`) and of its healer timer
 * (`session.heal`). See SessionActor.ts for the kind.
 */

const { SessionEvents } = Domain
type Snapshot = Domain.SessionSnapshot
type Row = Ledger.SessionRow
type State = Ledger.SessionState
type AnyReportCommand = EnvelopeOf<typeof Domain.ControlProtocol.SessionReport>

/** A report of one event or one activity (a `session.events` run is applied one event at a time). */
export type ReportCommand = AnyReportCommand & {
  readonly body: {
    readonly report: Exclude<AnyReportCommand["body"]["report"], { readonly type: "session.events-reported" }>
  }
}

/**
 * A `session.events` run as the single-event reports it holds, in order, each with the run's command
 * id (one command: its transcript entries share its report id).
 */
export const eventsOf = (command: AnyReportCommand): ReadonlyArray<ReportCommand> => {
  const report = command.body.report
  if (report.type !== "session.events-reported") return [command as ReportCommand]
  return report.body.events.map(
    (e) =>
      ({
        ...command,
        body: {
          nodeId: command.body.nodeId,
          report: {
            type: "session.event-reported",
            body: { sessionId: report.body.sessionId, promptEpoch: report.body.promptEpoch, ...e }
          }
        }
      }) as ReportCommand
  )
}

export const HEAL_TIMER = "heal"

/** The answer to an `ask` (`Domain.Replies`): refusals are data with a code a caller can act on and a message a user can read. */
export type SessionReply = Domain.Replies.SessionReply

export interface Deps {
  readonly snapshots: SessionSnapshots
  readonly health: (nodeId: string) => Effect.Effect<Domain.NodeHealthRecord | undefined>
  readonly taskKind: Pick<Actor.AnyActorKind, "name" | "shards">
  readonly healEvery: Duration.Duration
  /** how long a working session may show no sign of life before its turn is ended as lost */
  readonly staleAfterMs: number
  /**
   * when this control plane began to listen (epoch ms): silence before it is not a node's silence, as
   * nobody was there to hear its heartbeats (a restarted stack); none: count from the evidence alone
   */
  readonly listeningSince?: number
}

export type Reaction = Actor.Reaction<State>

export interface Helpers {
  readonly meta: { readonly causationId: string; readonly correlationId: string }
  readonly event: (r: Row, envelope: Envelope) => Actor.Outgoing
  readonly activityEvent: (r: Row, snapshot: Snapshot) => Actor.Outgoing
  readonly toTask: (
    r: Row,
    status: "running" | "failed" | "awaiting_followup" | "turn_ended",
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

export const report = (
  deps: Deps,
  state: State,
  command: ReportCommand,
  h: Helpers
): Effect.Effect<Reaction, unknown> => {
  const { nodeId, report } = command.body
  const row = state.row
  // An ended session's transcript is final: a report that arrives after the stop or the failure is not
  // kept, nor one after the session went to sleep because its task ended. Both are commands in this
  // session's own order, after every report the ingress passed on before them. The task's end alone is
  // not enough: the result that ends it goes to the task actor, which may apply it before this actor has
  // written the output the node sent before that result (the ingress refuses what a node sends after its
  // result, in the node's order: ReportOwnership.ts).
  const reason =
    row === null
      ? "unknown_session"
      : row.nodeId !== nodeId
        ? "session_not_on_node"
        : row.status === "stopped" || row.status === "failed"
          ? "session_ended"
          : row.status === "sleeping" && state.taskEnded === true
            ? "task_ended"
            : undefined
  if (reason !== undefined || row === null) {
    const dropped: Ledger.DroppedReport = {
      nodeId,
      // the report's type and subject as the vm-agent publishes them (as the ingress records what it refuses)
      subject: Subjects.agentReport(nodeId, report.type, report.body.sessionId),
      type: report.type,
      entityId: report.body.sessionId,
      messageId: command.id,
      reason: reason ?? "unknown_session",
      payload: JSON.stringify(report.body)
    }
    // What the session's own node says after its end (its agent's last event and `stopped`, which cross the stop
    // on the way) is the expected race, audited but no warning; a node that names a session not its own is not.
    const message = `dropped ${report.type} from ${nodeId} for session ${report.body.sessionId}: ${reason}`
    return (
      reason === "session_ended" || reason === "task_ended" ? Effect.logDebug(message) : Effect.logWarning(message)
    ).pipe(
      Effect.as({
        state: { ...state, dropped: [dropped] },
        reply: {
          ok: false,
          code: "dropped",
          message:
            reason === "session_ended"
              ? `session ${report.body.sessionId} has ended`
              : reason === "task_ended"
                ? `the task of session ${report.body.sessionId} has ended; its transcript is final`
                : `session ${report.body.sessionId} is not placed on node ${nodeId}`
        } satisfies SessionReply
      })
    )
  }
  if (report.type === "session.event-reported") {
    return Effect.gen(function* () {
      const body = report.body
      const seq = row.lastSeq + 1
      const event = body.event
      const next = h.bump(row, {
        lastSeq: seq,
        lastEvidenceAt: new Date(),
        ...(event.type === "agent-started" ? { acpSessionId: event.acpSessionId } : {})
      })
      // the snapshot's plan is stricter than the event's (its statuses, bounded sizes): one it refuses is not shown
      const plan = event.type === "plan" ? Domain.SessionSnapshot.shape.plan.safeParse(event.entries) : undefined
      // Staged unread: the event's answer is not needed, and the snapshot's read waits for the commit.
      yield* deps.snapshots.stage(row.id, (current) =>
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
        // of the command's event, parsed with it
        SessionEvents.SessionEventAppended.wrap(
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
      if (event.type === "failed" && next.status !== "failed" && next.status !== "stopped") {
        const reason = `agent failed: ${event.reason}`
        const failed = yield* h.fail(next, reason, { events: [appended] })
        return {
          ...failed,
          state: { ...failed.state, transcript: [entry, ...failed.state.transcript] },
          send: [...(failed.send ?? []), ...h.toTask(next, "failed", reason)]
        }
      }
      return { state: withEntry, events: [appended], reply: { ok: true } satisfies SessionReply }
    })
  }
  // The node restarted with this turn in flight: it ends as lost, and the reloaded session can go on.
  if (report.body.stopReason === "lost" && row.status !== "failed" && row.status !== "stopped") {
    return endLost(deps, state, h, command.id, {
      why: report.body.reason ?? "the node lost the turn in flight",
      promptEpoch: report.body.promptEpoch,
      source: "vm_report",
      task: "awaiting_followup",
      healTimer: HEAL_TIMER
    })
  }
  return Effect.gen(function* () {
    const body = report.body
    // A sleeping session's agent was stopped on purpose (ADR 0023): its snapshot stays `sleeping`.
    const ended = row.status === "failed" || row.status === "stopped" || row.status === "sleeping"
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
            ? (Domain.endedShort(body.stopReason) ?? "completed")
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
    // A conversation's turn that ended, or any turn cancelled or ended by its agent short of its work (at a limit,
    // refusing: a task-mode run reports no result then), leaves the session waiting for a follow-up.
    if (
      written.written &&
      body.activity === "idle" &&
      ((body.stopReason === "end_turn" && row.mode === "conversation") ||
        Domain.endedShort(body.stopReason) !== undefined) &&
      !ended
    ) {
      send.push(...h.toTask(next, "awaiting_followup"))
    }
    // A task-mode run's turn that ended: its node now keeps the work and reports the task's result; the task
    // waits for that result for a bounded time (a node that restarts or loses it meanwhile).
    if (written.written && body.activity === "idle" && body.stopReason === "end_turn" && row.mode === "task" && !ended)
      send.push(...h.toTask(next, "turn_ended"))
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

/**
 * The healer (`session.heal`, every `healEvery` while a turn runs): a working session needs signs of
 * life — its node's reports, or heartbeats that list it as prompting — within `staleAfterMs`; without
 * them the turn ends as lost (ADR 0021). The task then awaits a follow-up while the node heartbeats (it
 * is up, without the turn), and fails at its step when the node has gone silent.
 */
export const heal = (
  deps: Deps,
  state: State,
  command: { readonly id: string; readonly at: string },
  h: Helpers
): Effect.Effect<Reaction, unknown> =>
  Effect.gen(function* () {
    const row = state.row
    if (row === null || row.status === "failed" || row.status === "stopped") return { state }
    const current = yield* deps.snapshots.get(row.id)
    if (current === undefined || !Domain.WORKING_ACTIVITIES.has(current.activity)) return { state }
    // A heal that fires late (the control plane or NATS was down) saw no heartbeats meanwhile: look again later.
    const everyMs = Duration.toMillis(deps.healEvery)
    if (Date.now() - Date.parse(command.at) > 2 * everyMs + 1000) return { state, timers: [h.healTimer(row.id)] }
    const now = Date.now()
    // Just started (`sam up` again after Ctrl-C): the node may be starting too, about to report the turn
    // it lost; it gets the whole bound to show up before its silence counts (ADR 0021).
    if (deps.listeningSince !== undefined && now - deps.listeningSince < deps.staleAfterMs)
      return { state, timers: [h.healTimer(row.id)] }
    const cutoff = now - deps.staleAfterMs
    const node = row.nodeId === null ? undefined : yield* deps.health(row.nodeId)
    const heardAt = node === undefined ? undefined : Date.parse(node.receivedAt)
    const evidence =
      Date.parse(current.updatedAt) > cutoff ||
      (row.lastEvidenceAt !== null && row.lastEvidenceAt.getTime() > cutoff) ||
      (heardAt !== undefined && heardAt > cutoff && node!.promptingSessions.includes(row.id))
    if (evidence) return { state, timers: [h.healTimer(row.id)] }
    const nodeUp =
      heardAt !== undefined && heardAt > now - Math.min(HEARTBEAT_FRESH_SECONDS * 1000, deps.staleAfterMs / 2)
    const bound = Math.round(deps.staleAfterMs / 1000)
    const why = nodeUp
      ? `node ${row.nodeId} is up but no longer runs this turn (no sign of it for ${bound} s); the turn in flight was lost`
      : `node ${row.nodeId} went silent (${heardAt === undefined ? "no heartbeat" : `last heartbeat ${Math.round((now - heardAt) / 1000)} s ago`}); the turn in flight was lost`
    return yield* endLost(deps, state, h, command.id, {
      why,
      promptEpoch: current.promptEpoch,
      source: "healer",
      task: nodeUp ? "awaiting_followup" : "failed",
      healTimer: HEAL_TIMER
    })
  })
