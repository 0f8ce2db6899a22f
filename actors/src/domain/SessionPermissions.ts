import { Domain, type EnvelopeOf, Subjects } from "@sam/bus"
import { Effect } from "effect"
import * as Actor from "../ActorKind.js"
import * as Ledger from "./SessionLedger.js"
import type { Deps, Helpers, Reaction, ReportCommand, SessionReply } from "./SessionReports.js"

/**
 * The agent's permission requests (ADR 0018), as the session actor keeps them: a reported
 * `permission-requested` event is answered at once by the project's `allow`/`deny` policy, or waits
 * (row `pending_permissions`, snapshot `permissions`) for a member's answer or its durable timeout,
 * after which it is refused. Every answer is a `permission-answered` transcript entry (who and what)
 * and a `session.permission-answer` to the node. The end of the turn forgets what still waits.
 */

const { ControlProtocol, NodeProtocol, SessionEvents } = Domain
type Row = Ledger.SessionRow
type State = Ledger.SessionState
type Pending = Domain.PendingPermission
type Policy = Domain.ControlProtocol.PermissionPolicy
type AnswerCommand = EnvelopeOf<typeof ControlProtocol.SessionAnswerPermission>
type TimeoutCommand = EnvelopeOf<typeof ControlProtocol.SessionPermissionTimeout>
type By = { readonly by: "user"; readonly userId: string } | { readonly by: "policy" | "timeout" }

export const CANCELLED = "cancelled"
export const timerName = (requestId: string) => `permission:${requestId}`

const policyOf = (state: State) =>
  state.permissionPolicy ?? {
    policy: "ask" as Policy,
    timeoutSeconds: ControlProtocol.DEFAULT_PERMISSION_TIMEOUT_SECONDS
  }

/** The option a policy picks: the first allowing (or rejecting) one; cancelled when there is none. */
export const policyChoice = (policy: "allow" | "deny", options: Pending["options"]): string => {
  const kinds = policy === "allow" ? ["allow_once", "allow_always"] : ["reject_once", "reject_always"]
  return options.find((option) => kinds.includes(option.kind))?.optionId ?? CANCELLED
}

const str = (value: unknown, max: number) => (typeof value === "string" ? value.slice(0, max) : null)

/** The pending request a `permission-requested` event describes. */
const pendingOf = (
  event: Domain.SessionEventOf<"permission-requested">,
  promptEpoch: number,
  timeoutSeconds: number
): Pending => {
  const options = event.options
  const now = Date.now()
  return {
    requestId: str(event.requestId, 128) ?? "",
    title: str(event.title, 2000),
    toolCallId: str(event.toolCallId, 256),
    options: options.slice(0, 20).map((o) => ({
      optionId: str(o.optionId, 256) ?? "",
      name: str(o.name, 2000) ?? "",
      kind: str(o.kind, 64) ?? ""
    })),
    promptEpoch,
    requestedAt: new Date(now).toISOString(),
    expiresAt: new Date(now + timeoutSeconds * 1000).toISOString()
  }
}

/** Answer `request`: the transcript entry, its event, the node's command, the timer cancelled. */
const answered = (h: Helpers, row: Row, reportId: string, request: Pending, optionId: string, by: By) => {
  const seq = row.lastSeq + 1
  const option = request.options.find((o) => o.optionId === optionId)
  const payload: Domain.SessionEventOf<"permission-answered"> = {
    type: "permission-answered",
    requestId: request.requestId,
    outcome: optionId,
    ...(option === undefined ? {} : { optionName: option.name, optionKind: option.kind }),
    ...by
  }
  const next: Row = {
    ...row,
    lastSeq: seq,
    pendingPermissions: (row.pendingPermissions ?? []).filter((p) => p.requestId !== request.requestId)
  }
  const entry = Ledger.ownEntry(seq, payload, request.promptEpoch, reportId)
  const event = h.event(
    next,
    SessionEvents.SessionEventAppended.make(
      { sessionId: row.id, seq, promptEpoch: request.promptEpoch, event: payload },
      h.meta
    )
  )
  const send: Array<Actor.Outgoing> =
    row.nodeId === null
      ? []
      : [
          {
            subject: Subjects.nodeCommand(row.nodeId, NodeProtocol.SessionPermissionAnswer.type),
            envelope: NodeProtocol.SessionPermissionAnswer.make(
              { sessionId: row.id, requestId: request.requestId, optionId },
              h.meta
            )
          }
        ]
  return { next, entry, event, send, timer: Actor.Timer.cancel(timerName(request.requestId)) }
}

/** Bring the snapshot's `permissions` (and `lastSeq`) in line with the row. */
const syncSnapshot = (deps: Deps, row: Row) => {
  const pending = row.pendingPermissions ?? []
  return deps.snapshots.write(row.id, (current) => {
    if (current === undefined) return undefined
    const same = JSON.stringify(current.permissions ?? []) === JSON.stringify(pending)
    if (same && current.lastSeq >= row.lastSeq) return undefined
    const { permissions: _old, ...rest } = current
    return {
      ...rest,
      lastSeq: Math.max(current.lastSeq, row.lastSeq),
      ...(pending.length > 0 ? { permissions: [...pending] } : {})
    }
  })
}

/**
 * After a node's report was applied: a `permission-requested` event waits or is answered by the
 * policy; `permission-resolved`, the end of the turn or an activity other than working forgets it.
 */
export const afterReport = (
  deps: Deps,
  command: ReportCommand,
  reaction: Reaction,
  h: Helpers
): Effect.Effect<Reaction, unknown> =>
  Effect.gen(function* () {
    const row = reaction.state.row
    const applied = (reaction.reply as SessionReply | undefined)?.ok === true
    if (!applied || row === null) return reaction
    const before = row.pendingPermissions ?? []
    const { report } = command.body
    if (row.status === "stopped" || row.status === "failed") {
      if (before.length === 0) return reaction
      return {
        ...reaction,
        state: { ...reaction.state, row: { ...row, pendingPermissions: [] } },
        timers: [...(reaction.timers ?? []), ...before.map((p) => Actor.Timer.cancel(timerName(p.requestId)))]
      }
    }
    let next = row
    const events = [...(reaction.events ?? [])]
    const send = [...(reaction.send ?? [])]
    const timers = [...(reaction.timers ?? [])]
    const transcript = [...reaction.state.transcript]
    const forget = (keep: (p: Pending) => boolean) => {
      const gone = (next.pendingPermissions ?? []).filter((p) => !keep(p))
      if (gone.length === 0) return
      next = { ...next, pendingPermissions: (next.pendingPermissions ?? []).filter(keep) }
      timers.push(...gone.map((p) => Actor.Timer.cancel(timerName(p.requestId))))
    }
    if (report.type === "session.event-reported") {
      const event = report.body.event
      if (event.type === "permission-requested" && typeof event.requestId === "string") {
        const { policy, timeoutSeconds } = policyOf(reaction.state)
        const request = pendingOf(event, report.body.promptEpoch, timeoutSeconds)
        if (policy === "ask") {
          next = { ...next, pendingPermissions: [...(next.pendingPermissions ?? []), request] }
          timers.push(
            Actor.Timer.set(
              timerName(request.requestId),
              new Date(request.expiresAt),
              ControlProtocol.SessionPermissionTimeout.make({ sessionId: row.id, requestId: request.requestId }, h.meta)
            )
          )
        } else {
          const done = answered(h, next, command.id, request, policyChoice(policy, request.options), { by: "policy" })
          next = done.next
          transcript.push(done.entry)
          events.push(done.event)
          send.push(...done.send)
        }
      } else if (event.type === "permission-resolved" && typeof event.requestId === "string") {
        forget((p) => p.requestId !== event.requestId)
      } else if (event.type === "turn-ended" || event.type === "turn-failed" || event.type === "stopped") {
        forget(() => false)
      }
    } else if (!Domain.WORKING_ACTIVITIES.has(report.body.activity)) {
      forget((p) => p.promptEpoch > report.body.promptEpoch)
    }
    if (next === row && before.length === 0) return reaction
    yield* syncSnapshot(deps, next)
    return { ...reaction, state: { ...reaction.state, row: next, transcript }, events, send, timers }
  })

const refuse = (state: State, code: Extract<SessionReply, { ok: false }>["code"], message: string): Reaction => ({
  state,
  reply: { ok: false, code, message } satisfies SessionReply
})

/** A member's answer, or the timeout's: stale ones are refused (`permission_not_pending`). */
export const answer = (
  deps: Deps,
  state: State,
  command: AnswerCommand | TimeoutCommand,
  h: Helpers
): Effect.Effect<Reaction, unknown> =>
  Effect.gen(function* () {
    const row = state.row
    const { sessionId, requestId } = command.body
    if (row === null) return refuse(state, "not_found", `no session ${sessionId}`)
    const request = (row.pendingPermissions ?? []).find((p) => p.requestId === requestId)
    if (request === undefined || row.status === "stopped" || row.status === "failed") {
      return refuse(
        state,
        "permission_not_pending",
        `session ${row.id} has no permission request ${requestId} waiting for an answer (answered, timed out, or its turn is over)`
      )
    }
    let optionId: string
    let by: By
    if (command.type === "session.answer-permission") {
      optionId = command.body.optionId
      by = { by: "user", userId: command.body.by }
      if (optionId !== CANCELLED && !request.options.some((o) => o.optionId === optionId)) {
        return refuse(
          state,
          "unknown_option",
          `permission request ${requestId} has no option ${optionId}; its options: ${request.options.map((o) => o.optionId).join(", ")} (or cancelled)`
        )
      }
    } else {
      optionId = policyChoice("deny", request.options)
      by = { by: "timeout" }
    }
    const done = answered(h, h.bump(row, {}), command.id, request, optionId, by)
    yield* syncSnapshot(deps, done.next)
    return {
      state: { ...state, row: done.next, transcript: [done.entry] },
      events: [done.event],
      send: done.send,
      timers: command.type === "session.answer-permission" ? [done.timer] : [],
      reply: { ok: true, outcome: optionId } as SessionReply
    } satisfies Reaction
  })
