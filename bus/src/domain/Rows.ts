import { z } from "zod"
import { NodeId, ProjectId, SessionId, TaskId, UserId, WorkspaceId } from "../Ids.js"
import { AgentKind, TaskMode } from "./NodeProtocol.js"
import { ExecutionStep, NodeStatus, SessionStatus, TaskStatus, WorkspaceStatus } from "./States.js"

/**
 * The ledger's rows as the actors and the gateway read them (issue 12): decoded once, where they are read,
 * into branded ids and the state machines' statuses, so no reader casts an id. A row that does not decode is
 * a ledger the code does not know (a defect), not bad input.
 */

/** The columns of `tasks` the task actor keeps as its state (the prompt still in its stored form). */
export const TaskRow = z.object({
  id: TaskId,
  projectId: ProjectId,
  createdBy: UserId,
  prompt: z.string(),
  agent: AgentKind,
  mode: TaskMode,
  status: TaskStatus,
  executionStep: ExecutionStep.nullable(),
  errorStep: z.string().nullable(),
  errorReason: z.string().nullable(),
  nodeId: NodeId.nullable(),
  workspaceId: WorkspaceId.nullable(),
  sessionId: SessionId.nullable(),
  branch: z.string().nullable(),
  commitSha: z.string().nullable()
})
export type TaskRow = z.output<typeof TaskRow>

/** A task as the gateway lists it: the actor's columns, its pull request and its times. */
export const TaskRecord = TaskRow.extend({
  prUrl: z.string().nullable(),
  createdAt: z.date(),
  updatedAt: z.date(),
  finishedAt: z.date().nullable()
})
export type TaskRecord = z.output<typeof TaskRecord>

/** The columns of `workspaces` both the workspace actor and the gateway read. */
export const WorkspaceRow = z.object({
  id: WorkspaceId,
  projectId: ProjectId,
  nodeId: NodeId.nullable(),
  taskId: TaskId.nullable(),
  status: WorkspaceStatus,
  runtime: z.enum(["docker", "host"]).nullable(),
  dispatchedAt: z.date().nullable(),
  errorReason: z.string().nullable(),
  repoUrl: z.string().nullable(),
  branch: z.string().nullable()
})
export type WorkspaceRow = z.output<typeof WorkspaceRow>

/** A workspace as the gateway lists it. */
export const WorkspaceRecord = WorkspaceRow.extend({ createdAt: z.date(), updatedAt: z.date() })
export type WorkspaceRecord = z.output<typeof WorkspaceRecord>

/** The columns of `nodes` the node actor keeps as its state. */
export const NodeRow = z.object({
  id: NodeId,
  ownerId: UserId.nullable(),
  maxWorkspaces: z.number(),
  status: NodeStatus,
  /** `joined`: a machine its owner joined (ADR 0027); its vm-agent came with a join token */
  provider: z.enum(["local", "hetzner", "joined"]),
  providerRequestId: z.string().nullable(),
  agentReadyAt: z.date().nullable(),
  lastHeartbeatAt: z.date().nullable(),
  capabilities: z.unknown()
})
export type NodeRow = z.output<typeof NodeRow>

/** The columns of `sessions` every reader of a session needs (`last_seq` is a bigint: read as text). */
export const SessionRow = z.object({
  id: SessionId,
  projectId: ProjectId,
  taskId: TaskId.nullable(),
  workspaceId: WorkspaceId.nullable(),
  nodeId: NodeId.nullable(),
  agent: AgentKind,
  mode: TaskMode,
  status: SessionStatus,
  promptEpoch: z.number(),
  lastSeq: z.coerce.number(),
  errorReason: z.string().nullable(),
  endedAt: z.date().nullable()
})
export type SessionRow = z.output<typeof SessionRow>

/** Decodes rows a query read; a row that does not fit is a defect (a ledger this code does not know). */
export const decodeRows =
  <S extends z.ZodType>(schema: S, what: string) =>
  (rows: ReadonlyArray<unknown>): Array<z.output<S>> =>
    rows.map((row) => {
      const parsed = schema.safeParse(row)
      if (!parsed.success) throw new Error(`a ${what} row the code does not know: ${z.prettifyError(parsed.error)}`)
      return parsed.data
    })
