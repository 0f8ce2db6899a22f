import { Domain, type EnvelopeOf, Subjects } from "@sam/bus"
import { Effect } from "effect"
import * as Ledger from "./SessionLedger.js"
import type { Deps, Helpers, Reaction } from "./SessionReports.js"

/**
 * The session actor's handling of `session.command-rejected`: its node refused a command the actor
 * sent it (ADR 0019). A refused `session.start` fails the session (and its task) with the node's
 * reason; a refused `session.prompt` ends that prompt's turn as failed, with a `turn-failed`
 * transcript entry, and the session waits for another prompt (it fails when the node does not have
 * it at all); a refused permission answer (the agent no longer waits for it: its turn ended, or the
 * vm-agent restarted) gets a `permission-resolved` entry with outcome `undelivered`, so the transcript
 * does not end on an answer the agent never had; a refused cancel or stop changes nothing (a stopped
 * session is stopped either way, and `session.user-cancel` asks the node only while a turn is in flight).
 */

const { SessionEvents } = Domain
type State = Ledger.SessionState
type Command = EnvelopeOf<typeof Domain.ControlProtocol.SessionCommandRejected>

export const rejected = (deps: Deps, state: State, command: Command, h: Helpers): Effect.Effect<Reaction, unknown> => {
  const body = command.body
  const row = state.row
  if (row === null || row.nodeId !== body.nodeId) {
    const dropped: Ledger.DroppedReport = {
      nodeId: body.nodeId,
      subject: Subjects.agentReport(body.nodeId, "command.rejected"),
      type: "command.rejected",
      entityId: body.sessionId,
      messageId: command.id,
      reason: row === null ? "unknown_session" : "session_not_on_node",
      payload: JSON.stringify(body)
    }
    return Effect.succeed({ state: { ...state, dropped: [dropped] } })
  }
  const reason = `the node refused ${body.commandType} (${body.code}): ${body.message}`.slice(0, 4096)
  const log = Effect.logWarning(`session ${row.id}: ${reason}`)
  if (row.status === "failed" || row.status === "stopped") return log.pipe(Effect.as({ state }))
  if (body.commandType === "session.start" || (body.commandType === "session.prompt" && body.code === "not_found")) {
    return Effect.gen(function* () {
      yield* log
      const failed = yield* h.fail(row, reason, {})
      return { ...failed, send: [...(failed.send ?? []), ...h.toTask(row, "failed", reason)] }
    })
  }
  if (body.commandType === "session.permission-answer") return undelivered(state, row, command, reason, h)
  if (body.commandType !== "session.prompt") return log.pipe(Effect.as({ state }))
  const promptEpoch = body.promptEpoch ?? row.promptEpoch
  return Effect.gen(function* () {
    yield* log
    const seq = row.lastSeq + 1
    const said: Domain.SessionEventOf<"turn-failed"> = { type: "turn-failed", reason, source: "control_plane" }
    const next = h.bump(row, { lastSeq: seq })
    const at = new Date().toISOString()
    // The refused prompt's turn is over; a later prompt's snapshot is left alone.
    const written = yield* deps.snapshots.write(row.id, (current) =>
      current !== undefined && current.promptEpoch > promptEpoch
        ? undefined
        : {
            activity: "idle",
            promptStartedAt: null,
            promptEpoch,
            plan: current?.plan ?? null,
            source: "control_plane",
            reason: "failed",
            lastSeq: Math.max(current?.lastSeq ?? 0, seq),
            step: current?.step ?? null,
            updatedAt: at
          }
    )
    const entry = Ledger.ownEntry(seq, said, promptEpoch, command.id)
    return {
      state: { ...state, row: next, transcript: [entry] },
      events: [
        h.event(
          next,
          SessionEvents.SessionEventAppended.make({ sessionId: row.id, seq, promptEpoch, event: said }, h.meta)
        ),
        ...(written.written && written.snapshot !== undefined ? [h.activityEvent(next, written.snapshot)] : [])
      ],
      send: written.written ? h.toTask(next, "awaiting_followup") : []
    } satisfies Reaction
  })
}

/** The node refused a permission answer: say in the transcript that the agent never had it. */
const undelivered = (state: State, row: Ledger.SessionRow, command: Command, reason: string, h: Helpers) =>
  Effect.gen(function* () {
    yield* Effect.logWarning(`session ${row.id}: ${reason}`)
    const seq = row.lastSeq + 1
    const said: Domain.SessionEventOf<"permission-resolved"> = {
      type: "permission-resolved",
      requestId: command.body.requestId ?? null,
      outcome: "undelivered",
      reason,
      source: "control_plane"
    }
    const next = h.bump(row, { lastSeq: seq })
    const entry = Ledger.ownEntry(seq, said, row.promptEpoch, command.id)
    return {
      state: { ...state, row: next, transcript: [entry] },
      events: [
        h.event(
          next,
          SessionEvents.SessionEventAppended.make(
            { sessionId: row.id, seq, promptEpoch: row.promptEpoch, event: said },
            h.meta
          )
        )
      ]
    } satisfies Reaction
  })
