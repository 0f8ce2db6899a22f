import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { ApiError } from "./ApiError.js"
import type { Principal } from "./Auth.js"

export type Role = "owner" | "member"

/**
 * Project membership, checked on every route and every feed subscription (design §9): a project
 * that does not exist is `not_found`; one the caller is not a member of is `forbidden`.
 */
export const requireMember = Effect.fn("Access.requireMember")(function* (principal: Principal, projectId: string) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ role: Role | null }>`
    SELECT m.role FROM projects p
    LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = ${principal.userId}
    WHERE p.id = ${projectId}`.pipe(Effect.orDie)
  const row = rows[0]
  if (row === undefined) return yield* new ApiError({ code: "not_found", message: `no project ${projectId}` })
  if (row.role === null) {
    return yield* new ApiError({ code: "forbidden", message: `you are not a member of project ${projectId}` })
  }
  return row.role
})

export const requireOwner = Effect.fn("Access.requireOwner")(function* (principal: Principal, projectId: string) {
  const role = yield* requireMember(principal, projectId)
  if (role !== "owner") {
    return yield* new ApiError({ code: "forbidden", message: `only an owner of project ${projectId} may do this` })
  }
})

const projectOf = (table: "tasks" | "sessions" | "workspaces", what: string) =>
  Effect.fn(`Access.${what}`)(function* (principal: Principal, id: string) {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ projectId: string }>`
      SELECT project_id FROM ${sql(table)} WHERE id = ${id}`.pipe(Effect.orDie)
    const row = rows[0]
    if (row === undefined) return yield* new ApiError({ code: "not_found", message: `no ${what} ${id}` })
    yield* requireMember(principal, row.projectId)
    return row.projectId
  })

/** The project of a task, session or workspace, after checking the caller is one of its members. */
export const taskProject = projectOf("tasks", "task")
export const sessionProject = projectOf("sessions", "session")
export const workspaceProject = projectOf("workspaces", "workspace")

/**
 * What a caller may do with a task's work beyond reading it (ADR 0047). A task's agent runs with its submitter's
 * agent credential, on its submitter's node: `drive` (prompt it, answer its permission requests, run the task
 * again) is theirs alone; `end` (cancel, stop, stop or delete its workspace) is theirs or an owner's of the
 * project. A session or workspace without a task belongs to the owner of the node it is on.
 */
export type Act = "drive" | "end"

const actOn = (table: "tasks" | "sessions" | "workspaces", what: string) =>
  Effect.fn(`Access.act.${what}`)(function* (principal: Principal, id: string, act: Act) {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* (
      table === "tasks"
        ? sql<{ projectId: string; submitter: string | null }>`
          SELECT project_id, created_by AS submitter FROM tasks WHERE id = ${id}`
        : sql<{ projectId: string; submitter: string | null }>`
          SELECT x.project_id, COALESCE(t.created_by, n.owner_id) AS submitter FROM ${sql(table)} x
          LEFT JOIN tasks t ON t.id = x.task_id LEFT JOIN nodes n ON n.id = x.node_id
          WHERE x.id = ${id}`
    ).pipe(Effect.orDie)
    const row = rows[0]
    if (row === undefined) return yield* new ApiError({ code: "not_found", message: `no ${what} ${id}` })
    const role = yield* requireMember(principal, row.projectId)
    if (row.submitter === principal.userId || (act === "end" && role === "owner")) return row.projectId
    return yield* new ApiError({
      code: "forbidden",
      message:
        act === "drive"
          ? `${what} ${id} runs the agent of the member who started its task, with their credentials on their node: only they can prompt it, answer it or run it again`
          : `only the member who started the task of ${what} ${id}, or an owner of project ${row.projectId}, can end its work`
    })
  })

/** The project of a task, session or workspace, after checking the caller may act on it so (ADR 0047). */
export const actOnTask = actOn("tasks", "task")
export const actOnSession = actOn("sessions", "session")
export const actOnWorkspace = actOn("workspaces", "workspace")

/**
 * A node is visible to its owner and to the members of any project with a workspace on it; it is
 * `not_found` to everyone else (a node id says nothing about who may see it).
 */
export const requireNodeVisible = Effect.fn("Access.requireNodeVisible")(function* (
  principal: Principal,
  nodeId: string
) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ visible: boolean }>`
    SELECT (n.owner_id = ${principal.userId} OR EXISTS (
      SELECT 1 FROM workspaces w JOIN project_members m ON m.project_id = w.project_id
      WHERE w.node_id = n.id AND m.user_id = ${principal.userId})) AS visible
    FROM nodes n WHERE n.id = ${nodeId}`.pipe(Effect.orDie)
  if (rows[0] === undefined) return yield* new ApiError({ code: "not_found", message: `no node ${nodeId}` })
  if (!rows[0].visible) return yield* new ApiError({ code: "forbidden", message: `node ${nodeId} is not yours` })
})
