import { SqlClient } from "@effect/sql"
import { Domain } from "@sam/bus"
import { Effect } from "effect"
import type { ReportType } from "./ReportIngress.js"

/**
 * A node belongs to one user and hosts only that user's work (design §9, ADR 0015). Before a report
 * reaches its actor, the ingress checks it against the ledger: the session, workspace or task it names
 * must be the node's owner's (the task's submitter; for work without a task, the project's owner), and
 * a session report must be about a session that is still live. Whether the entity is placed on this
 * very node is the actor's check (it holds the row under lock). Ownership never changes once set: once a
 * node's report about a session passed, the ledger is not asked again for that node and session (issue
 * 12: that query was one statement of four per event), and whether the session or its task has ended
 * since is the session actor's check, which refuses and audits such a report with the same reasons.
 * A `command.rejected` has no rule here, so a legitimate one is never refused as foreign or ended:
 * CommandRejections.ts routes it only when the refused message is one the control plane sent to that
 * very node (ADR 0019).
 */

/** Reasons recorded in `dropped_reports` for a report refused here. */
export const Refusal = {
  /** the node has no owner (a node from before ownership that never hosted anything): it hosts nothing */
  unowned: "node_has_no_owner",
  /** the entity belongs to another user than the node's owner */
  foreign: "not_the_node_owners",
  /** the session was stopped or failed */
  sessionEnded: "session_ended",
  /** the session's task has ended (or its result was reported): its transcript is final */
  taskEnded: "task_ended",
  /** a task's result that names another session than the task's own */
  notTheTasksSession: "not_the_tasks_session",
  /**
   * the ledger does not know the session, workspace or task: a node learns of each only from a command
   * sent after its row was committed, so it is made up (the actors' own reason for it, for a session)
   */
  unknownSession: "unknown_session",
  unknownWorkspace: "unknown_workspace",
  unknownTask: "unknown_task"
} as const

/** A node's report as the ingress decoded it: its type is one of the reports' (a typo here is a type error). */
type Report = { readonly type: ReportType; readonly body: unknown }

interface Ownership {
  readonly ownerId: string | null
  readonly nodeOwner: string | null
  readonly sessionStatus?: string | null
  readonly taskStatus?: string | null
  /** a task result's task's own session */
  readonly taskSession?: string | null
}

const terminalTask = (status: string | null | undefined) =>
  status != null && Domain.TERMINAL_TASK_STATUSES.has(status as Domain.TaskStatus)

/** Keys remembered most recent last; past `max` the oldest go first. */
const recent = (max: number) => {
  const keys = new Set<string>()
  return {
    add: (key: string) => {
      keys.delete(key)
      keys.add(key)
      if (keys.size > max) keys.delete(keys.values().next().value as string)
    },
    has: (key: string) => keys.has(key)
  }
}

/**
 * The (node, session) pairs whose task result this ingress has passed on. A node reports its task's result
 * after the session's last event and activity, and the ingress handles one session's reports in order:
 * anything the node says about the session after the result is not the agent's work, even before the task
 * actor has recorded the task complete. Per node: what one node claims never silences another's reports.
 * Bounded: the oldest entries go first; the ledger check covers them.
 */
export const makeResultsSeen = (max = 10_000) => {
  const pairs = recent(max)
  return {
    add: (nodeId: string, sessionId: string) => pairs.add(`${nodeId} ${sessionId}`),
    has: (nodeId: string, sessionId: string) => pairs.has(`${nodeId} ${sessionId}`)
  }
}
export type ResultsSeen = ReturnType<typeof makeResultsSeen>

/**
 * The (node, session) pairs whose reports passed the ledger's check here. Bounded: the oldest entries
 * go first, and their next report is checked against the ledger again.
 */
export const makeOwnedSessions = (max = 10_000) => {
  const pairs = recent(max)
  return {
    add: (nodeId: string, sessionId: string) => pairs.add(`${nodeId} ${sessionId}`),
    has: (nodeId: string, sessionId: string) => pairs.has(`${nodeId} ${sessionId}`)
  }
}
export type OwnedSessions = ReturnType<typeof makeOwnedSessions>

const isSessionReport = (report: Report) =>
  report.type === "session.event-reported" ||
  report.type === "session.events-reported" ||
  report.type === "session.activity-reported"

const unknown = (report: Report) =>
  isSessionReport(report)
    ? Refusal.unknownSession
    : report.type === "task.result"
      ? Refusal.unknownTask
      : Refusal.unknownWorkspace

const lookup = (sql: SqlClient.SqlClient, report: Report, nodeId: string) => {
  const body = report.body as Record<string, unknown>
  const nodeOwner = sql`(SELECT n.owner_id FROM nodes n WHERE n.id = ${nodeId})`
  switch (report.type) {
    case "session.event-reported":
    case "session.events-reported":
    case "session.activity-reported":
      return sql<Ownership>`
        SELECT COALESCE(t.created_by, p.owner_id) AS owner_id, ${nodeOwner} AS node_owner,
          s.status AS session_status, t.status AS task_status
        FROM sessions s JOIN projects p ON p.id = s.project_id LEFT JOIN tasks t ON t.id = s.task_id
        WHERE s.id = ${String(body.sessionId)}`
    case "workspace.status-reported":
    case "workspace.bootlog-reported":
    case "workspace.bootlogs-reported":
      return sql<Ownership>`
        SELECT COALESCE(t.created_by, p.owner_id) AS owner_id, ${nodeOwner} AS node_owner
        FROM workspaces w JOIN projects p ON p.id = w.project_id LEFT JOIN tasks t ON t.id = w.task_id
        WHERE w.id = ${String(body.workspaceId)}`
    case "task.result":
      return sql<Ownership>`
        SELECT t.created_by AS owner_id, ${nodeOwner} AS node_owner, t.status AS task_status,
          t.session_id AS task_session
        FROM tasks t WHERE t.id = ${String(body.taskId)}`
    default:
      return undefined
  }
}

/**
 * Why `report` from `nodeId` is refused, or undefined when it goes on to its actor. An entity the
 * ledger does not know is refused here, not passed on for its actor to drop: a node naming made-up
 * sessions would otherwise have each of its reports stored again as a command (ADR 0050). A task result
 * that passes, about the task's own session, is remembered for the node (`resultsSeen`).
 */
export const refusal = (report: Report, nodeId: string, resultsSeen: ResultsSeen, owned: OwnedSessions) =>
  Effect.gen(function* () {
    const session = isSessionReport(report) ? String((report.body as { sessionId?: unknown }).sessionId) : undefined
    if (session !== undefined && owned.has(nodeId, session))
      return resultsSeen.has(nodeId, session) ? Refusal.taskEnded : undefined
    const sql = yield* SqlClient.SqlClient
    const query = lookup(sql, report, nodeId)
    if (query === undefined) return undefined
    const [row] = yield* query
    if (row === undefined) return unknown(report)
    if (row.nodeOwner === null) return Refusal.unowned
    if (row.ownerId !== row.nodeOwner) return Refusal.foreign
    if (session !== undefined) {
      if (row.sessionStatus === "stopped" || row.sessionStatus === "failed") return Refusal.sessionEnded
      if (terminalTask(row.taskStatus) || resultsSeen.has(nodeId, session)) return Refusal.taskEnded
      owned.add(nodeId, session)
    }
    if (report.type === "task.result") {
      const resultSession = String((report.body as { sessionId?: unknown }).sessionId)
      if (row.taskSession !== resultSession) return Refusal.notTheTasksSession
      resultsSeen.add(nodeId, resultSession)
    }
    return undefined
  })
