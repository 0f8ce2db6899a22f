import { SqlClient } from "@effect/sql"
import { type Api, Domain, Kv, type SessionId, Topology } from "@sam/bus"
import { StoredJson } from "@sam/sql"
import { Effect, Option } from "effect"
import { z } from "zod"
import { requireMember, sessionProject } from "../Access.js"
import { ApiError } from "../ApiError.js"
import type { Principal } from "../Auth.js"

type Snapshot = Domain.SessionSnapshot

/** A session as the API shows it: its row, its task's status, its pull request, times and token usage. */
const SessionRecord = Domain.Rows.SessionRow.extend({
  taskStatus: Domain.TaskStatus.nullable(),
  startedBy: z.string().nullable(),
  prUrl: z.string().nullable(),
  createdAt: z.date(),
  updatedAt: z.date(),
  usageTurns: z.number(),
  usageInput: z.number(),
  usageOutput: z.number(),
  usageTotal: z.number(),
  /** the payload's `update` of the latest ACP `usage_update` (stored JSON text), if any */
  usageUpdate: z.string().nullable()
})
type SessionRow = z.output<typeof SessionRecord>
const decodeSessions = Domain.Rows.decodeRows(SessionRecord, "session")

const ENDED_REASON: Partial<Record<Domain.TaskStatus, Snapshot["reason"]>> = {
  completed: "completed",
  cancelled: "cancelled",
  failed: "failed"
}

/**
 * The snapshot a reader may show (design §6): a session that has ended, or whose task has, is never
 * `prompting` or `recovering`, whatever the KV still says after a missed transition.
 */
export const visibleSnapshot = (
  snapshot: Snapshot | undefined,
  status: Domain.SessionStatus,
  taskStatus: Domain.TaskStatus | null
): Snapshot | null => {
  if (snapshot === undefined) return null
  const ended = status === "stopped" || status === "failed"
  if (!ended || !Domain.WORKING_ACTIVITIES.has(snapshot.activity)) return snapshot
  return {
    ...snapshot,
    activity: status === "failed" ? "error" : "stopped",
    promptStartedAt: null,
    reason:
      (taskStatus === null ? undefined : ENDED_REASON[taskStatus]) ?? (status === "failed" ? "failed" : "force_stopped")
  }
}

const toSession = (row: SessionRow, snapshot: Snapshot | undefined): z.input<typeof Api.Session> => {
  const status = Domain.visibleSessionStatus(row.status, row.taskStatus)
  return {
    id: row.id,
    projectId: row.projectId,
    taskId: row.taskId,
    workspaceId: row.workspaceId,
    nodeId: row.nodeId,
    agent: row.agent,
    mode: row.mode,
    status,
    storedStatus: row.status,
    taskStatus: row.taskStatus,
    startedBy: row.startedBy,
    promptEpoch: row.promptEpoch,
    lastSeq: row.lastSeq,
    errorReason: row.errorReason,
    prUrl: row.prUrl,
    snapshot: visibleSnapshot(snapshot, status, row.taskStatus),
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    endedAt: row.endedAt === null ? null : row.endedAt.toISOString(),
    usage: usageOf(row)
  }
}

/** An ACP `usage_update` as the transcript keeps it; anything else reads as none. */
const UsageUpdate = z.object({
  used: z.number().nonnegative(),
  size: z.number().nonnegative(),
  cost: z.object({ amount: z.number(), currency: z.string() }).nullish()
})

const usageOf = (row: SessionRow): Api.Session["usage"] => {
  let stored: unknown = null
  try {
    stored = row.usageUpdate === null ? null : JSON.parse(StoredJson.decode(row.usageUpdate))
  } catch {}
  const update = UsageUpdate.safeParse(stored)
  if (row.usageTurns === 0 && !update.success) return null
  return {
    turns: row.usageTurns,
    inputTokens: row.usageInput,
    outputTokens: row.usageOutput,
    totalTokens: row.usageTotal,
    context: update.success ? { usedTokens: update.data.used, sizeTokens: update.data.size } : null,
    cost: update.success ? (update.data.cost ?? null) : null
  }
}

/** The snapshots of these sessions from KV `sam_session_state`; a value that no longer parses reads as none. */
const snapshots = (ids: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    if (ids.length === 0) return new Map<string, Snapshot>()
    const store = yield* Kv.open(Topology.Buckets.sessionState.name, Domain.SessionSnapshot)
    const entries = yield* Effect.forEach(
      ids,
      (id) =>
        store.get(id).pipe(
          Effect.catchTag("KvCorrupt", () => Effect.succeed(Option.none())),
          Effect.map((entry) => [id, Option.getOrUndefined(entry)?.value] as const)
        ),
      { concurrency: 16 }
    )
    return new Map(entries.filter((e): e is readonly [string, Snapshot] => e[1] !== undefined))
  }).pipe(
    Effect.mapError(
      (e) => new ApiError({ code: "unavailable", message: `the session snapshots cannot be read now (${e.message})` })
    )
  )

const selectSessions = (sql: SqlClient.SqlClient, where: ReturnType<SqlClient.SqlClient["and"]>, limit: number) =>
  sql`
    SELECT s.id, s.project_id, s.task_id, s.workspace_id, s.node_id, s.agent, s.mode, s.status, t.status AS task_status,
      COALESCE(t.created_by, n.owner_id) AS started_by, s.prompt_epoch, s.last_seq, s.error_reason, s.pr_url, s.created_at, s.updated_at, s.ended_at,
      u.turns AS usage_turns, u.input AS usage_input, u.output AS usage_output, u.total AS usage_total,
      c.update::text AS usage_update
    FROM sessions s LEFT JOIN tasks t ON t.id = s.task_id LEFT JOIN nodes n ON n.id = s.node_id
    CROSS JOIN LATERAL (
      SELECT count(*)::int AS turns,
        coalesce(sum((e.payload->'usage'->>'inputTokens')::bigint), 0)::int AS input,
        coalesce(sum((e.payload->'usage'->>'outputTokens')::bigint), 0)::int AS output,
        coalesce(sum((e.payload->'usage'->>'totalTokens')::bigint), 0)::int AS total
      FROM session_events e
      WHERE e.session_id = s.id AND e.type = 'turn-ended' AND jsonb_typeof(e.payload->'usage') = 'object'
    ) u
    LEFT JOIN LATERAL (
      SELECT e.payload->'update' AS update FROM session_events e
      WHERE e.session_id = s.id AND e.type = 'update' AND e.payload->'update'->>'sessionUpdate' = 'usage_update'
      ORDER BY e.seq DESC LIMIT 1
    ) c ON true
    WHERE ${where}
    ORDER BY s.created_at DESC, s.id DESC
    LIMIT ${limit}`.pipe(Effect.orDie, Effect.map(decodeSessions))

/** A project's sessions, newest first, each with its (derived) status and snapshot. */
export const listSessions = Effect.fn("Sessions.list")(function* (
  principal: Principal,
  projectId: string,
  query: z.output<typeof Api.ListSessionsQuery>
) {
  yield* requireMember(principal, projectId)
  const sql = yield* SqlClient.SqlClient
  const rows = yield* selectSessions(
    sql,
    sql.and([
      sql`s.project_id = ${projectId}`,
      query.before === undefined
        ? sql`true`
        : sql`(s.created_at, s.id) < (SELECT created_at, id FROM sessions WHERE id = ${query.before})`
    ]),
    query.limit + 1
  )
  const page = rows.slice(0, query.limit)
  const snaps = yield* snapshots(page.map((r) => r.id))
  return {
    sessions: page.map((row) => toSession(row, snaps.get(row.id))),
    nextBefore: rows.length > query.limit ? (page[page.length - 1]?.id ?? null) : null
  }
})

/** One session as a member of its project sees it. */
export const getSession = Effect.fn("Sessions.get")(function* (principal: Principal, sessionId: SessionId) {
  yield* sessionProject(principal, sessionId)
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* selectSessions(sql, sql.and([sql`s.id = ${sessionId}`]), 1)
  if (row === undefined) return yield* new ApiError({ code: "not_found", message: `no session ${sessionId}` })
  const snaps = yield* snapshots([row.id])
  return toSession(row, snaps.get(row.id))
})

/** A transcript entry's event as the session actor stored it (checked when reported; the route's schema checks it again). */
const storedEvent = (payload: string): Api.SessionEventBody => JSON.parse(StoredJson.decode(payload))

/** A page of the transcript after `afterSeq`, in seq order; `nextAfterSeq` is null once it reached the end. */
export const transcript = Effect.fn("Sessions.transcript")(function* (
  principal: Principal,
  sessionId: SessionId,
  query: z.output<typeof Api.TranscriptQuery>
) {
  yield* sessionProject(principal, sessionId)
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ seq: number | string; promptEpoch: number | null; payload: string; at: Date }>`
    SELECT seq, prompt_epoch, payload::text AS payload, at FROM session_events
    WHERE session_id = ${sessionId} AND seq > ${query.afterSeq}
    ORDER BY seq LIMIT ${query.limit + 1}`.pipe(Effect.orDie)
  const [session] = yield* sql<{ lastSeq: number | string }>`
    SELECT last_seq FROM sessions WHERE id = ${sessionId}`.pipe(Effect.orDie)
  const page = rows.slice(0, query.limit)
  const events = page.map((row) => ({
    seq: Number(row.seq),
    promptEpoch: row.promptEpoch,
    event: storedEvent(row.payload),
    at: row.at.toISOString()
  }))
  return {
    sessionId,
    events,
    nextAfterSeq: rows.length > query.limit ? (events[events.length - 1]?.seq ?? null) : null,
    lastSeq: Number(session?.lastSeq ?? 0)
  }
})
