import { z } from "zod"
import { AgentKind, TaskMode } from "../domain/NodeProtocol.js"
import { TaskRow } from "../domain/Rows.js"
import { TaskStatus } from "../domain/States.js"
import { ProjectId, TaskId } from "../Ids.js"
import { endpoint } from "./Endpoint.js"
import { limit } from "./Paging.js"
import { storable } from "./Text.js"

/** A task: its ledger row (`domain/Rows.ts`) as the API shows it, with its pull request and its times. */
export const Task = TaskRow.extend({
  agent: z.string(),
  /** the pull request opened for its branch (task mode on a GitHub App repository, ADR 0028) */
  prUrl: z.string().nullable(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
  finishedAt: z.iso.datetime().nullable()
})
export type Task = z.infer<typeof Task>

/** The chat submit: a message to a project becomes a task. */
export const CreateTaskRequest = z.object({
  /** kept exactly, NUL characters too (ADR 0017) */
  prompt: z.string().min(1).max(200_000),
  /** default: the profile's agent, else the demo agent */
  agent: AgentKind.optional(),
  /** default: the profile's task mode, else `task` */
  mode: TaskMode.optional(),
  /** an agent profile of the project: its agent, model, permission mode, prompt addition and runtime assets */
  profileId: z.string().max(64).optional()
})

export const CancelTaskRequest = z.object({ reason: storable(z.string().max(1000)).optional() })

/** One change of a task's status, as recorded in `task_status_events`; `from` is null for the first. */
export const TaskStatusChange = z.object({
  from: TaskStatus.nullable(),
  to: TaskStatus,
  actor: z.string(),
  reason: z.string().nullable(),
  at: z.iso.datetime()
})

/** A task with its status history, oldest change first. */
export const TaskDetail = Task.extend({ statusEvents: z.array(TaskStatusChange) })

export const ListTasksQuery = z.object({
  /** one status or several, comma-separated: `status=queued,in_progress` */
  status: z
    .string()
    .transform((value) => value.split(",").filter((part) => part !== ""))
    .pipe(z.array(TaskStatus).min(1))
    .optional(),
  limit: limit(50, 200),
  before: TaskId.optional()
})

export const TaskList = z.object({
  tasks: z.array(Task),
  /** pass as `before` for the next page; null when this page is the last */
  nextBefore: TaskId.nullable()
})

const ProjectParams = z.object({ projectId: ProjectId })
const TaskParams = z.object({ taskId: TaskId })

export const TaskEndpoints = {
  listTasks: endpoint({
    method: "GET",
    path: "/projects/:projectId/tasks",
    summary: "A project's tasks, newest first, optionally of some statuses",
    tag: "tasks",
    params: ProjectParams,
    query: ListTasksQuery,
    response: TaskList
  }),
  getTask: endpoint({
    method: "GET",
    path: "/tasks/:taskId",
    summary: "One task, with every change of its status",
    tag: "tasks",
    params: TaskParams,
    response: TaskDetail
  }),
  createTask: endpoint({
    method: "POST",
    path: "/projects/:projectId/tasks",
    summary: "Submit a message to a project: it becomes a task that runs an agent",
    tag: "tasks",
    params: ProjectParams,
    body: CreateTaskRequest,
    response: Task,
    status: 201
  }),
  cancelTask: endpoint({
    method: "POST",
    path: "/tasks/:taskId/cancel",
    summary: "Cancel a task that has not ended (its submitter or a project owner)",
    tag: "tasks",
    params: TaskParams,
    body: CancelTaskRequest,
    response: Task
  }),
  retryTask: endpoint({
    method: "POST",
    path: "/tasks/:taskId/retry",
    summary: "Run a failed or cancelled task again, in a new workspace (its submitter only)",
    tag: "tasks",
    params: TaskParams,
    response: Task
  })
}
