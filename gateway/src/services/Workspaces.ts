import { SqlClient } from "@effect/sql"
import { type Api, Domain, type ProjectId, type WorkspaceId } from "@sam/bus"
import { Effect } from "effect"
import type { z } from "zod"
import { actOnWorkspace, requireMember, workspaceProject } from "../Access.js"
import { ApiError } from "../ApiError.js"
import type { Principal } from "../Auth.js"
import * as Command from "../Command.js"

const C = Domain.ControlProtocol

type WorkspaceRow = Domain.Rows.WorkspaceRecord
const decodeWorkspaces = Domain.Rows.decodeRows(Domain.Rows.WorkspaceRecord, "workspace")

const iso = (value: Date | null) => (value === null ? null : value.toISOString())

const toWorkspace = (row: WorkspaceRow): z.input<typeof Api.Workspace> => ({
  id: row.id,
  projectId: row.projectId,
  nodeId: row.nodeId,
  taskId: row.taskId,
  status: row.status,
  runtime: row.runtime,
  repoUrl: row.repoUrl,
  branch: row.branch,
  errorReason: row.errorReason,
  dispatchedAt: iso(row.dispatchedAt),
  createdAt: row.createdAt.toISOString(),
  updatedAt: row.updatedAt.toISOString()
})

const select = (sql: SqlClient.SqlClient, where: ReturnType<SqlClient.SqlClient["and"]>, limit: number) =>
  sql`
    SELECT w.id, w.project_id, w.node_id, w.task_id, w.status, w.runtime,
      COALESCE(w.repo_url, p.repo_url) AS repo_url, COALESCE(w.branch, p.default_branch) AS branch,
      w.error_reason, w.dispatched_at, w.created_at, w.updated_at
    FROM workspaces w JOIN projects p ON p.id = w.project_id
    WHERE ${where}
    ORDER BY w.created_at DESC, w.id DESC
    LIMIT ${limit}`.pipe(Effect.orDie, Effect.map(decodeWorkspaces))

const one = (workspaceId: WorkspaceId) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* select(sql, sql.and([sql`w.id = ${workspaceId}`]), 1)
    if (row === undefined) return yield* new ApiError({ code: "not_found", message: `no workspace ${workspaceId}` })
    return toWorkspace(row)
  })

/** A project's workspaces, newest first. */
export const listWorkspaces = Effect.fn("Workspaces.list")(function* (
  principal: Principal,
  projectId: ProjectId,
  query: z.output<typeof Api.ListWorkspacesQuery>
) {
  yield* requireMember(principal, projectId)
  const sql = yield* SqlClient.SqlClient
  const rows = yield* select(
    sql,
    sql.and([
      sql`w.project_id = ${projectId}`,
      query.before === undefined
        ? sql`true`
        : sql`(w.created_at, w.id) < (SELECT created_at, id FROM workspaces WHERE id = ${query.before})`
    ]),
    query.limit + 1
  )
  const page = rows.slice(0, query.limit)
  return {
    workspaces: page.map(toWorkspace),
    nextBefore: rows.length > query.limit ? (page[page.length - 1]?.id ?? null) : null
  }
})

export const getWorkspace = Effect.fn("Workspaces.get")(function* (principal: Principal, workspaceId: WorkspaceId) {
  yield* workspaceProject(principal, workspaceId)
  return yield* one(workspaceId)
})

/** The boot log lines after `afterSeq`, oldest first, as the workspace actor persisted them. */
export const bootLog = Effect.fn("Workspaces.bootLog")(function* (
  principal: Principal,
  workspaceId: WorkspaceId,
  query: z.output<typeof Api.BootLogQuery>
) {
  yield* workspaceProject(principal, workspaceId)
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{
    id: number | string
    step: string
    status: "started" | "completed" | "failed" | "info"
    message: string
    at: Date
  }>`
    SELECT id, step, status, message, at FROM workspace_boot_log
    WHERE workspace_id = ${workspaceId} AND id > ${query.afterSeq}
    ORDER BY id LIMIT ${query.limit + 1}`.pipe(Effect.orDie)
  const lines = rows.slice(0, query.limit).map((row) => ({
    seq: Number(row.id),
    step: row.step,
    status: row.status,
    message: row.message,
    at: row.at.toISOString()
  }))
  return {
    workspaceId,
    lines,
    nextAfterSeq: rows.length > query.limit ? (lines[lines.length - 1]?.seq ?? null) : null
  }
})

/**
 * Stop or delete a workspace through its actor, which tells the node and stops the workspace's
 * sessions and cancels its task; the node's report finishes the move (`stopped`, `deleted`).
 */
export const change = Effect.fn("Workspaces.change")(function* (
  principal: Principal,
  workspaceId: WorkspaceId,
  kind: "stop" | "delete"
) {
  yield* actOnWorkspace(principal, workspaceId, "end")
  const reason = `${kind === "stop" ? "stopped" : "deleted"} by ${principal.userId}`
  const command = yield* Command.build(() =>
    kind === "stop"
      ? C.WorkspaceStopCommand.make({ workspaceId, reason })
      : C.WorkspaceDeleteCommand.make({ workspaceId, reason })
  )
  yield* Command.ask(Domain.WorkspaceRef, workspaceId, command)
  return { workspace: yield* one(workspaceId), accepted: true as const }
})
