import { SqlClient } from "@effect/sql"
import { type Api, Domain, makeId, type ProjectId, type TaskId } from "@sam/bus"
import { StoredText } from "@sam/sql"
import { Effect } from "effect"
import type { z } from "zod"
import { actOnTask, requireMember, taskProject } from "../Access.js"
import { ApiError } from "../ApiError.js"
import type { Principal } from "../Auth.js"
import * as Command from "../Command.js"
import { GatewayConfig } from "../Config.js"
import { requireSubmitterAccess } from "../GitHubRepoAccess.js"
import { requireAgentCredential, requireProfile } from "./Agents.js"

const C = Domain.ControlProtocol

type TaskRow = Domain.Rows.TaskRecord
const decodeTasks = Domain.Rows.decodeRows(Domain.Rows.TaskRecord, "task")

export const toTask = (row: TaskRow) => ({
  ...row,
  prompt: StoredText.decode(row.prompt),
  createdAt: row.createdAt.toISOString(),
  updatedAt: row.updatedAt.toISOString(),
  finishedAt: row.finishedAt === null ? null : row.finishedAt.toISOString()
})

/** A task as the API shows it; `not_found` if there is none (membership is the caller's check). */
export const getTask = Effect.fn("Tasks.get")(function* (taskId: TaskId) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql`
    SELECT id, project_id, created_by, prompt, agent, mode, status, execution_step, error_step, error_reason,
           node_id, workspace_id, session_id, branch, commit_sha, pr_url, created_at, updated_at, finished_at
    FROM tasks WHERE id = ${taskId}`.pipe(Effect.orDie, Effect.map(decodeTasks))
  const row = rows[0]
  if (row === undefined) return yield* new ApiError({ code: "not_found", message: `no task ${taskId}` })
  return toTask(row)
})

/**
 * The chat submit, shared by `POST /projects/:id/tasks` and the NATS ingress: a member's message
 * becomes a task (the task actor records it and starts it). Answers once the actor has committed.
 */
export const createTask = Effect.fn("Tasks.create")(function* (
  principal: Principal,
  projectId: ProjectId,
  input: z.output<typeof Api.CreateTaskRequest>
) {
  yield* requireMember(principal, projectId)
  // A profile of another project is `not_found`; its agent and task mode are the defaults of the submit.
  const profile =
    input.profileId === undefined ? undefined : yield* requireProfile(principal, projectId, input.profileId)
  const mode = input.mode ?? profile?.taskMode ?? "task"
  // On a GitHub repository: the submitter's own access, as GitHub says now (ADR 0048)
  yield* requireSubmitterAccess((yield* GatewayConfig).githubApp, principal.userId, projectId, mode)
  const agent = input.agent ?? profile?.agent ?? "demo"
  yield* requireAgentCredential(principal.userId, agent)
  const taskId = makeId("task")
  const submit = yield* Command.build(() =>
    C.TaskSubmit.make({
      taskId,
      projectId,
      userId: principal.userId,
      prompt: input.prompt,
      agent,
      mode
    })
  )
  if (profile !== undefined) {
    const sql = yield* SqlClient.SqlClient
    yield* sql`INSERT INTO task_agent_profiles (task_id, profile_id) VALUES (${taskId}, ${profile.id})`.pipe(
      Effect.orDie
    )
  }
  yield* Command.ask(Domain.TaskRef, taskId, submit)
  return yield* getTask(taskId)
})

export const cancelTask = Effect.fn("Tasks.cancel")(function* (
  principal: Principal,
  taskId: TaskId,
  input: z.output<typeof Api.CancelTaskRequest>
) {
  yield* actOnTask(principal, taskId, "end")
  const cancel = yield* Command.build(() =>
    C.TaskCancel.make({
      taskId,
      reason: input.reason ?? `cancelled by ${principal.userId}`
    })
  )
  yield* Command.ask(Domain.TaskRef, taskId, cancel)
  return yield* getTask(taskId)
})

/**
 * A project's tasks, newest first, of the given statuses if any. `before` is the last task id of the
 * previous page: paging by position, not by offset, so new tasks do not shift the pages.
 */
export const listTasks = Effect.fn("Tasks.list")(function* (
  principal: Principal,
  projectId: ProjectId,
  query: z.output<typeof Api.ListTasksQuery>
) {
  yield* requireMember(principal, projectId)
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql`
    SELECT id, project_id, created_by, prompt, agent, mode, status, execution_step, error_step, error_reason,
           node_id, workspace_id, session_id, branch, commit_sha, pr_url, created_at, updated_at, finished_at
    FROM tasks
    WHERE project_id = ${projectId}
      ${query.status === undefined ? sql`` : sql`AND status IN ${sql.in(query.status)}`}
      ${
        query.before === undefined
          ? sql``
          : sql`AND (created_at, id) < (SELECT created_at, id FROM tasks WHERE id = ${query.before})`
      }
    ORDER BY created_at DESC, id DESC
    LIMIT ${query.limit + 1}`.pipe(Effect.orDie, Effect.map(decodeTasks))
  const page = rows.slice(0, query.limit)
  return {
    tasks: page.map(toTask),
    nextBefore: rows.length > query.limit ? (page[page.length - 1]?.id ?? null) : null
  }
})

/** A task with its status history (`task_status_events`, oldest first), for a member of its project. */
export const getTaskDetail = Effect.fn("Tasks.detail")(function* (principal: Principal, taskId: TaskId) {
  yield* taskProject(principal, taskId)
  const sql = yield* SqlClient.SqlClient
  const task = yield* getTask(taskId)
  const events = yield* sql<{
    fromStatus: Domain.TaskStatus | null
    toStatus: Domain.TaskStatus
    actor: string
    reason: string | null
    at: Date
  }>`
    SELECT from_status, to_status, actor, reason, at FROM task_status_events
    WHERE task_id = ${taskId} ORDER BY id`.pipe(Effect.orDie)
  return {
    ...task,
    statusEvents: events.map((e) => ({
      from: e.fromStatus,
      to: e.toStatus,
      actor: e.actor,
      reason: e.reason,
      at: e.at.toISOString()
    }))
  }
})

/** Run a failed or cancelled task again (`invalid_state`, with the allowed moves, otherwise). */
export const retryTask = Effect.fn("Tasks.retry")(function* (principal: Principal, taskId: TaskId) {
  const projectId = yield* actOnTask(principal, taskId, "drive")
  const { mode, agent } = yield* getTask(taskId)
  yield* requireSubmitterAccess((yield* GatewayConfig).githubApp, principal.userId, projectId, mode)
  yield* requireAgentCredential(principal.userId, agent)
  const retry = yield* Command.build(() => C.TaskRetry.make({ taskId }))
  yield* Command.ask(Domain.TaskRef, taskId, retry)
  return yield* getTask(taskId)
})
