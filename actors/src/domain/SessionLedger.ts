import { SqlClient } from "@effect/sql"
import { Domain, Trace } from "@sam/bus"
import { StoredJson } from "@sam/sql"
import { Effect, FiberRef } from "effect"
import { z } from "zod"

const { TERMINAL_TASK_STATUSES } = Domain

/** The session's row in `sessions` as the session actor reads it (the pending permissions still stored JSON). */
const Loaded = Domain.Rows.SessionRow.extend({
  acpSessionId: z.string().nullable(),
  runningReportedAt: z.date().nullable(),
  lastEvidenceAt: z.date().nullable(),
  version: z.coerce.number(),
  pendingPermissions: z.string(),
  taskStatus: Domain.TaskStatus.nullable(),
  permissionPolicy: Domain.ControlProtocol.PermissionPolicy.nullable(),
  permissionTimeoutSeconds: z.number().nullable()
})
const decodeLoaded = Domain.Rows.decodeRows(Loaded, "session")

/** The session's row in `sessions`, as the session actor reads and writes it. */
export interface SessionRow extends Domain.Rows.SessionRow {
  readonly acpSessionId: string | null
  /** when the task was told its agent is running (sent once) */
  readonly runningReportedAt: Date | null
  /** the last report from the node about this session: the healer's evidence of life */
  readonly lastEvidenceAt: Date | null
  readonly version: number
  /** the agent's permission requests waiting for an answer (ADR 0018); none when absent */
  readonly pendingPermissions?: ReadonlyArray<Domain.PendingPermission>
}

export interface TranscriptEntry {
  readonly seq: number
  readonly type: string
  readonly payload: Domain.SessionEventBody
  /** null for an entry the control plane recorded itself (`permission-answered`) */
  readonly nodeSeq: number | null
  readonly promptEpoch: number
  readonly reportId: string
}

/** A transcript entry the control plane records itself (no node seq): a failure, a lost turn, an answer, a queued prompt. */
export const ownEntry = (
  seq: number,
  payload: Domain.SessionEventBody,
  promptEpoch: number,
  reportId: string
): TranscriptEntry => ({ seq, type: payload.type, payload, nodeSeq: null, promptEpoch, reportId })

export interface DroppedReport {
  readonly nodeId: string
  readonly subject: string | null
  readonly type: string
  readonly entityId: string | null
  readonly messageId: string | null
  readonly reason: string
  readonly payload: string
}

/**
 * What a handler decided, written by `save` in the command's transaction: the row, plus the
 * transcript entries and audit rows this command adds (empty after every load).
 */
export interface SessionState {
  readonly row: SessionRow | null
  readonly transcript: ReadonlyArray<TranscriptEntry>
  /** the time of those entries, as their published events carry it (else the transaction's) */
  readonly transcriptAt?: string
  readonly dropped: ReadonlyArray<DroppedReport>
  /** its task has ended (completed, failed or cancelled): the session takes no more prompts */
  readonly taskEnded?: boolean
  /** its task completed: a stop of its workspace that keeps the files puts the session to sleep (ADR 0023) */
  readonly taskCompleted?: boolean
  /** the latest turn's tool calls still open, loaded only for a command that may end it as lost (ADR 0021) */
  readonly openToolCalls?: ReadonlyArray<{ readonly toolCallId: string; readonly title: string | null }>
  /** the project's permission policy (ADR 0018), as loaded with the row */
  readonly permissionPolicy?: {
    readonly policy: Domain.ControlProtocol.PermissionPolicy
    readonly timeoutSeconds: number
  }
}

/**
 * The session's row as its actor starts from, with its task's status and its project's permission policy. No row
 * lock: the session actor reads it outside any transaction (it commits a group in one statement, ADR 0056), where
 * `FOR UPDATE` would be a transaction of its own, flushed to the disk, and the shard's fence already keeps every
 * other owner from writing it.
 */
export const load = (id: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql`
      SELECT s.id, s.project_id, s.workspace_id, s.task_id, s.node_id, s.agent, s.mode, s.status, s.acp_session_id,
        s.prompt_epoch, s.last_seq, s.error_reason, s.running_reported_at, s.last_evidence_at, s.ended_at, s.version,
        s.pending_permissions::text AS pending_permissions, t.status AS task_status, p.permission_policy, p.permission_timeout_seconds
      FROM sessions s LEFT JOIN tasks t ON t.id = s.task_id LEFT JOIN projects p ON p.id = s.project_id
      WHERE s.id = ${id}`.pipe(Effect.map(decodeLoaded))
    const found = rows[0]
    const taskStatus = found?.taskStatus ?? null
    const permissionPolicy = found?.permissionPolicy ?? null
    const permissionTimeoutSeconds = found?.permissionTimeoutSeconds ?? null
    let row: SessionRow | null = null
    if (found !== undefined) {
      const {
        taskStatus: _t,
        permissionPolicy: _p,
        permissionTimeoutSeconds: _s,
        pendingPermissions,
        ...columns
      } = found
      row = {
        ...columns,
        pendingPermissions: JSON.parse(StoredJson.decode(pendingPermissions)) as Array<Domain.PendingPermission>
      }
    }
    const taskEnded = taskStatus !== null && TERMINAL_TASK_STATUSES.has(taskStatus)
    const policy =
      permissionPolicy === null
        ? {}
        : { permissionPolicy: { policy: permissionPolicy, timeoutSeconds: Number(permissionTimeoutSeconds) } }
    const taskCompleted = taskStatus === "completed"
    return {
      row,
      transcript: [],
      dropped: [],
      taskEnded,
      taskCompleted,
      ...policy
    } satisfies SessionState as SessionState
  })

/** The state a command starts from after another of the session in the same transaction: the row as saved, nothing left to write. */
export const carried = (state: SessionState): SessionState => ({
  row: state.row,
  transcript: [],
  dropped: [],
  ...(state.taskEnded === undefined ? {} : { taskEnded: state.taskEnded }),
  ...(state.taskCompleted === undefined ? {} : { taskCompleted: state.taskCompleted }),
  ...(state.permissionPolicy === undefined ? {} : { permissionPolicy: state.permissionPolicy })
})

/**
 * The part of a session's state its actor alone writes: the row as saved, nothing left to write, and none of what
 * the load reads of other kinds' rows (its task's status, its project's policy), which may change meanwhile. A
 * state without `taskEnded` was not loaded (a load always sets it).
 */
export const ownPart = (state: SessionState): SessionState => ({ row: state.row, transcript: [], dropped: [] })

/** The most of a refused report's payload (and of its reason) an audit row keeps, in UTF-16 units. */
const DROPPED_PAYLOAD_CHARS = 4096
const DROPPED_REASON_CHARS = 1024

/**
 * `text` cut to its first `max` characters, marked as cut: what a node sends is audited, not kept (ADR
 * 0050); a node's report is up to 900 kB, and a node may send as many refused reports as it likes.
 */
const bounded = (text: string, max: number) => {
  if (text.length <= max) return text
  // never half a surrogate pair, which would be stored as a replacement character
  const last = text.charCodeAt(max - 1)
  const end = last >= 0xd800 && last <= 0xdbff ? max - 1 : max
  return `${text.slice(0, end)}… [truncated: ${text.length} characters in all]`
}

/** The statement that writes audit rows (one at least): run by the report ingress for reports refused before they reach an actor. */
const droppedStatement = (sql: SqlClient.SqlClient, rows: ReadonlyArray<DroppedReport>) =>
  sql`INSERT INTO dropped_reports ${sql.insert(
    rows.map((row) => ({
      ...row,
      reason: bounded(row.reason, DROPPED_REASON_CHARS),
      payload: bounded(row.payload, DROPPED_PAYLOAD_CHARS)
    }))
  )}`

/** Audit rows, also written by the report ingress for reports refused before they reach an actor. */
export const insertDropped = (rows: ReadonlyArray<DroppedReport>) =>
  Effect.gen(function* () {
    if (rows.length === 0) return
    yield* droppedStatement(yield* SqlClient.SqlClient, rows)
  })

/** One command's save: the row when it changed, the transcript entries and audit rows it adds. */
export const save = (state: SessionState, previous: SessionState) =>
  Effect.gen(function* () {
    // the correlation id of the command being applied: that of the request the entries answer (issue 12)
    const correlationId = (yield* FiberRef.get(Trace.correlation)) ?? null
    yield* saveMany([{ state, previous, correlationId }])
  })

/**
 * The saves of a transaction's commands, in their order, as two statements for the runtime to run in the WITH of
 * the transaction's last one (issue 12: a round trip each was a statement per event on the live path): each
 * session's row as the last save that changed it left it, and every transcript entry, with the correlation id of
 * the command that added it. Their text does not change with their number (`unnest` of arrays), so Postgres
 * parses it once per connection (ADR 0033). The transcript's foreign key is checked at the statement's end, when
 * a new session's row is there. Audit rows of refused reports (rare) come first, in a statement of their own: the
 * runtime may commit the whole group in one statement (ADR 0056), so nothing here writes.
 */
export const saveStatements = (
  saves: ReadonlyArray<{
    readonly state: SessionState
    readonly previous: SessionState
    readonly correlationId: string | null
  }>
) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = new Map<string, SessionRow>()
    const entries: Array<
      TranscriptEntry & {
        readonly sessionId: string
        readonly at: string | null
        readonly correlationId: string | null
      }
    > = []
    const dropped: Array<DroppedReport> = []
    for (const { state, previous, correlationId } of saves) {
      const row = state.row
      if (row !== null && row !== previous.row) rows.set(row.id, row)
      if (row !== null)
        for (const entry of state.transcript)
          entries.push({ ...entry, sessionId: row.id, at: state.transcriptAt ?? null, correlationId })
      dropped.push(...state.dropped)
    }
    const audit = dropped.length === 0 ? [] : [droppedStatement(sql, dropped)]
    if (rows.size === 0 && entries.length === 0) return audit
    const r = [...rows.values()]
    return [
      ...audit,
      sql`
          INSERT INTO sessions (id, project_id, workspace_id, task_id, node_id, agent, mode, status, acp_session_id,
            prompt_epoch, last_seq, error_reason, running_reported_at, last_evidence_at, ended_at, version,
            pending_permissions)
          SELECT id, project_id, workspace_id, task_id, node_id, agent, mode, status, acp_session_id, prompt_epoch,
            last_seq, error_reason, running_reported_at, last_evidence_at, ended_at, version, pending_permissions::jsonb
          FROM unnest(${r.map((x) => x.id)}::text[], ${r.map((x) => x.projectId)}::text[],
            ${r.map((x) => x.workspaceId)}::text[], ${r.map((x) => x.taskId)}::text[], ${r.map((x) => x.nodeId)}::text[],
            ${r.map((x) => x.agent)}::text[], ${r.map((x) => x.mode)}::text[], ${r.map((x) => x.status)}::text[],
            ${r.map((x) => x.acpSessionId)}::text[], ${r.map((x) => x.promptEpoch)}::int[],
            ${r.map((x) => x.lastSeq)}::bigint[], ${r.map((x) => x.errorReason)}::text[],
            ${r.map((x) => x.runningReportedAt)}::timestamptz[], ${r.map((x) => x.lastEvidenceAt)}::timestamptz[],
            ${r.map((x) => x.endedAt)}::timestamptz[], ${r.map((x) => x.version)}::int[],
            ${r.map((x) => StoredJson.encode(JSON.stringify(x.pendingPermissions ?? [])))}::text[])
            AS r(id, project_id, workspace_id, task_id, node_id, agent, mode, status, acp_session_id, prompt_epoch,
              last_seq, error_reason, running_reported_at, last_evidence_at, ended_at, version, pending_permissions)
          ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, acp_session_id = EXCLUDED.acp_session_id,
            prompt_epoch = EXCLUDED.prompt_epoch, last_seq = EXCLUDED.last_seq, error_reason = EXCLUDED.error_reason,
            running_reported_at = EXCLUDED.running_reported_at, last_evidence_at = EXCLUDED.last_evidence_at,
            ended_at = EXCLUDED.ended_at, version = EXCLUDED.version, pending_permissions = EXCLUDED.pending_permissions,
            updated_at = now()`,
      sql`
        INSERT INTO session_events (session_id, seq, type, payload, node_seq, prompt_epoch, report_id, correlation_id, at)
        SELECT session_id, seq, type, payload::jsonb, node_seq, prompt_epoch, report_id, correlation_id, COALESCE(at, now())
        FROM unnest(${entries.map((e) => e.sessionId)}::text[], ${entries.map((e) => e.seq)}::bigint[],
          ${entries.map((e) => e.type)}::text[], ${entries.map((e) => StoredJson.encode(JSON.stringify(e.payload)))}::text[],
          ${entries.map((e) => e.nodeSeq)}::bigint[], ${entries.map((e) => e.promptEpoch)}::int[],
          ${entries.map((e) => e.reportId)}::text[], ${entries.map((e) => e.correlationId)}::text[],
          ${entries.map((e) => e.at)}::timestamptz[])
          AS e(session_id, seq, type, payload, node_seq, prompt_epoch, report_id, correlation_id, at)`
    ]
  })

/** `saveStatements` run: the sessions' rows, then their transcript entries. */
export const saveMany = (saves: Parameters<typeof saveStatements>[0]) =>
  Effect.flatMap(saveStatements(saves), (statements) =>
    Effect.forEach(statements, (statement) => statement, { discard: true })
  )
