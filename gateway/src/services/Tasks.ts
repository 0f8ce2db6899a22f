import { SqlClient } from "@effect/sql"
import { ControlPlane } from "@sam/actors"
import { type Api, Domain, makeId } from "@sam/bus"
import { Effect } from "effect"
import type { z } from "zod"
import { requireMember, taskProject } from "../Access.js"
import { ApiError } from "../ApiError.js"
import type { Principal } from "../Auth.js"
import * as Command from "../Command.js"

const C = Domain.ControlProtocol

interface TaskRow {
  readonly id: string
  readonly projectId: string
  readonly createdBy: string
  readonly prompt: string
  readonly agent: string
  readonly mode: "task" | "conversation"
  readonly status: Domain.TaskStatus
  readonly executionStep: Domain.ExecutionStep | null
  readonly errorStep: string | null
  readonly errorReason: string | null
  readonly nodeId: string | null
  readonly workspaceId: string | null
  readonly sessionId: string | null
  readonly branch: string | null
  readonly commitSha: string | null
  readonly createdAt: Date
  readonly updatedAt: Date
  readonly finishedAt: Date | null
}

export const toTask = (row: TaskRow) => ({
  ...row,
  createdAt: row.createdAt.toISOString(),
  updatedAt: row.updatedAt.toISOString(),
  finishedAt: row.finishedAt === null ? null : row.finishedAt.toISOString()
})

/** A task as the API shows it; `not_found` if there is none (membership is the caller's check). */
export const getTask = Effect.fn("Tasks.get")(function* (taskId: string) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<TaskRow>`
    SELECT id, project_id, created_by, prompt, agent, mode, status, execution_step, error_step, error_reason,
           node_id, workspace_id, session_id, branch, commit_sha, created_at, updated_at, finished_at
    FROM tasks WHERE id = ${taskId}`.pipe(Effect.orDie)
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
  projectId: string,
  input: z.output<typeof Api.CreateTaskRequest>
) {
  yield* requireMember(principal, projectId)
  const taskId = makeId("task")
  const submit = yield* Command.build(() =>
    C.TaskSubmit.make({
      taskId,
      projectId: projectId as never,
      userId: principal.userId,
      prompt: input.prompt,
      agent: input.agent,
      mode: input.mode
    })
  )
  yield* Command.ask(ControlPlane.TaskRef, taskId, submit)
  return yield* getTask(taskId)
})

export const cancelTask = Effect.fn("Tasks.cancel")(function* (
  principal: Principal,
  taskId: string,
  input: z.output<typeof Api.CancelTaskRequest>
) {
  yield* taskProject(principal, taskId)
  const cancel = yield* Command.build(() =>
    C.TaskCancel.make({
      taskId: taskId as never,
      reason: input.reason ?? `cancelled by ${principal.userId}`
    })
  )
  yield* Command.ask(ControlPlane.TaskRef, taskId, cancel)
  return yield* getTask(taskId)
})
