import { z } from "zod"
import { AgentKind, TaskMode } from "../domain/NodeProtocol.js"
import { ExecutionStep, TaskStatus } from "../domain/States.js"
import { NodeId, ProjectId, SessionId, TaskId, UserId, WorkspaceId } from "../Ids.js"
import { endpoint } from "./Endpoint.js"

export const Task = z.object({
  id: TaskId,
  projectId: ProjectId,
  createdBy: UserId,
  prompt: z.string(),
  agent: z.string(),
  mode: TaskMode,
  status: TaskStatus,
  executionStep: ExecutionStep.nullable(),
  errorStep: z.string().nullable(),
  errorReason: z.string().nullable(),
  nodeId: NodeId.nullable(),
  workspaceId: WorkspaceId.nullable(),
  sessionId: SessionId.nullable(),
  branch: z.string().nullable(),
  commitSha: z.string().nullable(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
  finishedAt: z.iso.datetime().nullable()
})
export type Task = z.infer<typeof Task>

/** The chat submit: a message to a project becomes a task. */
export const CreateTaskRequest = z.object({
  prompt: z.string().min(1).max(200_000),
  agent: AgentKind.default("demo"),
  mode: TaskMode.default("task")
})

export const CancelTaskRequest = z.object({ reason: z.string().max(1000).optional() })

const ProjectParams = z.object({ projectId: ProjectId })
const TaskParams = z.object({ taskId: TaskId })

export const TaskEndpoints = {
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
    summary: "Cancel a task that has not ended",
    tag: "tasks",
    params: TaskParams,
    body: CancelTaskRequest,
    response: Task
  })
}
