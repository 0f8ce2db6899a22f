import { SqlClient } from "@effect/sql"
import { Domain } from "@sam/bus"
import { StoredJson } from "@sam/sql"
import { Effect } from "effect"
import * as Actor from "../ActorKind.js"
import * as Ledger from "./SessionLedger.js"
import { timerName } from "./SessionPermissions.js"
import type { Deps, Helpers, Reaction, SessionReply } from "./SessionReports.js"

/**
 * A lost turn (ADR 0021): the node restarted with a turn in flight and says so (`idle`, stop reason
 * `lost`), or the healer found a working session with no sign of life past its bound. Either way the
 * turn ends in the transcript — every tool call still open closed as failed, then a `turn-ended` entry
 * with reason `lost` that says what was lost — the snapshot is `idle` / `lost`, waiting permission
 * requests are forgotten, and the task is told: `awaiting_followup` when the session can go on, or
 * `failed` (which fails the session too) when its node has gone silent.
 */

const { SessionEvents } = Domain
type State = Ledger.SessionState

export interface OpenToolCall {
  readonly toolCallId: string
  readonly title: string | null
}

/** The tool calls of the session's latest turn that never reported `completed`, `failed` or `cancelled`, in order. */
export const openToolCalls = (sessionId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ payload: string }>`
      SELECT e.payload::text AS payload FROM session_events e JOIN sessions s ON s.id = e.session_id
      WHERE e.session_id = ${sessionId} AND e.prompt_epoch = s.prompt_epoch
        AND e.type IN ('tool-call', 'tool-call-update') ORDER BY e.seq`
    const calls = new Map<string, { title: string | null; open: boolean }>()
    for (const row of rows) {
      const payload = JSON.parse(StoredJson.decode(row.payload)) as Record<string, unknown>
      if (typeof payload.toolCallId !== "string") continue
      const known = calls.get(payload.toolCallId)
      const done = Domain.toolCallFinished(payload.status)
      calls.set(payload.toolCallId, {
        title: typeof payload.title === "string" ? payload.title.slice(0, 2000) : (known?.title ?? null),
        open: (known?.open ?? true) && !done
      })
    }
    return [...calls].filter(([, c]) => c.open).map(([toolCallId, c]): OpenToolCall => ({ toolCallId, title: c.title }))
  })

export interface Lost {
  /** what happened, for the transcript and the task's reason */
  readonly why: string
  /** the lost turn's epoch: a snapshot of a later prompt is left alone */
  readonly promptEpoch: number
  readonly source: "vm_report" | "healer"
  /** what the task is told: the session can go on (`awaiting_followup`) or nothing can (`failed`) */
  readonly task: "awaiting_followup" | "failed"
  /** the healer's timer, cancelled once the turn has ended */
  readonly healTimer: string
}

/** End the turn in flight as lost; nothing changes when the snapshot no longer shows that turn working. */
export const endLost = (
  deps: Deps,
  state: State,
  h: Helpers,
  reportId: string,
  lost: Lost
): Effect.Effect<Reaction, unknown> =>
  Effect.gen(function* () {
    const row = state.row
    if (row === null) return { state, reply: { ok: true } satisfies SessionReply }
    const at = new Date().toISOString()
    const calls = state.openToolCalls ?? []
    const lastSeq = row.lastSeq + calls.length + 1
    const written = yield* deps.snapshots.write(row.id, (current) => {
      if (
        current !== undefined &&
        (current.promptEpoch > lost.promptEpoch || !Domain.WORKING_ACTIVITIES.has(current.activity))
      )
        return undefined
      return {
        activity: "idle",
        promptStartedAt: null,
        promptEpoch: Math.max(current?.promptEpoch ?? 0, lost.promptEpoch),
        plan: current?.plan ?? null,
        source: lost.source,
        reason: "lost",
        lastSeq: Math.max(current?.lastSeq ?? 0, lastSeq),
        step: current?.step ?? null,
        updatedAt: at
      }
    })
    if (!written.written) {
      return { state: { ...state, row: h.bump(row, { lastEvidenceAt: new Date() }) }, reply: { ok: true } }
    }
    const said: Array<Domain.SessionEventBody> = [
      ...calls.map(
        (call): Domain.SessionEventOf<"tool-call-update"> => ({
          type: "tool-call-update",
          toolCallId: call.toolCallId,
          title: call.title,
          status: "failed",
          content: [],
          rawOutput: null,
          reason: "lost",
          source: "control_plane"
        })
      ),
      {
        type: "turn-ended",
        stopReason: "lost",
        reason: "lost",
        message: lost.why,
        lostToolCalls: [...calls],
        source: "control_plane"
      }
    ]
    const entries = said.map((payload, i) => Ledger.ownEntry(row.lastSeq + i + 1, payload, lost.promptEpoch, reportId))
    const pending = row.pendingPermissions ?? []
    const next = h.bump(row, {
      lastSeq,
      pendingPermissions: [],
      ...(lost.source === "vm_report" ? { lastEvidenceAt: new Date() } : {})
    })
    yield* Effect.logWarning(`session ${row.id}: turn ${lost.promptEpoch} lost (${lost.why}); task ${lost.task}`)
    return {
      state: { ...state, row: next, transcript: [...state.transcript, ...entries] },
      events: [
        ...entries.map((entry) =>
          h.event(
            next,
            SessionEvents.SessionEventAppended.make(
              {
                sessionId: row.id,
                seq: entry.seq,
                promptEpoch: entry.promptEpoch,
                event: entry.payload
              },
              h.meta
            )
          )
        ),
        ...(written.snapshot === undefined ? [] : [h.activityEvent(next, written.snapshot)])
      ],
      send: [...h.toTask(next, lost.task, lost.why)],
      timers: [Actor.Timer.cancel(lost.healTimer), ...pending.map((p) => Actor.Timer.cancel(timerName(p.requestId)))],
      reply: { ok: true } satisfies SessionReply
    } satisfies Reaction
  })
