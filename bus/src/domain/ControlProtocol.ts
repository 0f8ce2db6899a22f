import { z } from "zod"
import { defineMessage, registry } from "../Envelope.js"
import { MessageId, NodeId, ProjectId, SessionId, TaskId, UserId, WorkspaceId } from "../Ids.js"
import {
  AgentKind,
  BootLog,
  BootLogs,
  CommandRejected,
  NodeReady,
  SessionActivity,
  SessionEvent,
  SessionEvents,
  TaskMode,
  TaskResult,
  WorkspaceStatusReport
} from "./NodeProtocol.js"
import { ExecutionStep, TaskStatus } from "./States.js"

/**
 * Commands between the control plane's actors (`sam.cmd.<kind>.<shard>.<id>`), and the reports the
 * ingress hands them. A report is wrapped with the node that sent it (taken from the subject, which
 * the broker guarantees): the receiving actor drops and audits one that names an entity its ledger
 * does not place on that node.
 */

// ── project (kind "project", id proj_…) ────────────────────────────────────────────────────
export const ProjectCreate = defineMessage(
  "project.create",
  z.object({
    projectId: ProjectId,
    ownerId: UserId,
    name: z.string().trim().min(1).max(200),
    /** any Git URL or path the nodes can reach (a local path or file:// URL on this machine) */
    repoUrl: z.string().trim().min(1).max(2048),
    defaultBranch: z
      .string()
      .regex(/^[A-Za-z0-9._/-]{1,255}$/)
      .default("main")
  }),
  { durable: true }
)
export const MemberRole = z.enum(["owner", "member"])
export type MemberRole = z.infer<typeof MemberRole>
/**
 * Make `userId` a member with `role`, or change the role of a member. Refused with `last_owner`
 * when it would leave the project without an owner, `not_found` when there is no project. The
 * sender checks that the user exists and that `by` may do this.
 */
export const ProjectAddMember = defineMessage(
  "project.add-member",
  z.object({ projectId: ProjectId, userId: UserId, role: MemberRole, by: UserId }),
  { durable: true }
)
/** Remove a member. Refused with `last_owner` for the only owner, `not_found` for a non-member. */
export const ProjectRemoveMember = defineMessage(
  "project.remove-member",
  z.object({ projectId: ProjectId, userId: UserId, by: UserId }),
  { durable: true }
)
/**
 * How a project's agents' permission requests are answered (ADR 0018): `ask` a member, who has
 * `timeoutSeconds` before the request is refused; `allow` or `deny` at once, without a person.
 */
export const PermissionPolicy = z.enum(["ask", "allow", "deny"])
export type PermissionPolicy = z.infer<typeof PermissionPolicy>
export const PermissionTimeoutSeconds = z.number().int().min(1).max(86_400)
export const DEFAULT_PERMISSION_TIMEOUT_SECONDS = 600
/** Change the project's permission policy or its timeout; `by` is an owner (the sender checks). */
export const ProjectSetPermissions = defineMessage(
  "project.set-permissions",
  z.object({
    projectId: ProjectId,
    policy: PermissionPolicy.optional(),
    timeoutSeconds: PermissionTimeoutSeconds.optional(),
    by: UserId
  }),
  { durable: true }
)
export const projectCommands = registry(ProjectCreate, ProjectAddMember, ProjectRemoveMember, ProjectSetPermissions)

// ── task (kind "task", id task_…) ──────────────────────────────────────────────────────────
export const TaskSubmit = defineMessage(
  "task.submit",
  z.object({
    taskId: TaskId,
    projectId: ProjectId,
    userId: UserId,
    prompt: z.string().min(1).max(200_000),
    agent: AgentKind.default("demo"),
    mode: TaskMode.default("task")
  }),
  { durable: true }
)
export const TaskCancel = defineMessage(
  "task.cancel",
  z.object({ taskId: TaskId, reason: z.string().max(1000).optional() }),
  {
    durable: true
  }
)
export const TaskRetry = defineMessage("task.retry", z.object({ taskId: TaskId }), { durable: true })
/** from the node actor: a ready node with capacity is the task's */
export const TaskNodeAssigned = defineMessage("task.node-assigned", z.object({ taskId: TaskId, nodeId: NodeId }), {
  durable: true
})
/** from the node actor: the node reserved a slot for the task's workspace (inserted `pending` on it) */
export const TaskNodeReserved = defineMessage(
  "task.node-reserved",
  z.object({ taskId: TaskId, nodeId: NodeId, workspaceId: WorkspaceId, ready: z.boolean() }),
  { durable: true }
)
/** from the node actor: no slot for the workspace (the node is full, or no new node within the caps) */
export const TaskNodeFull = defineMessage(
  "task.node-full",
  z.object({
    taskId: TaskId,
    nodeId: NodeId,
    workspaceId: WorkspaceId,
    reason: z.string().max(1000),
    attempt: z.number().int().nonnegative().default(0),
    /** no new node: another of the owner's nodes has room, so place again at once */
    elsewhere: z.boolean().default(false)
  }),
  { durable: true }
)
/**
 * Try placing again: a durable timer (backoff) of a task waiting for node capacity, or the node
 * actor when a slot of its owner's was released.
 */
export const TaskPlace = defineMessage(
  "task.place",
  z.object({ taskId: TaskId, attempt: z.number().int().nonnegative(), via: z.enum(["timer", "released"]) }),
  { durable: true }
)
/** from the workspace actor */
export const TaskWorkspaceStatus = defineMessage(
  "task.workspace-status",
  z.object({
    taskId: TaskId,
    workspaceId: WorkspaceId,
    status: z.enum(["running", "error"]),
    reason: z.string().max(4096).optional()
  }),
  { durable: true }
)
/**
 * from the session actor: the agent is running the first prompt, a turn ended (or was cancelled) and
 * the session awaits a follow-up, the session failed, or a user stopped it (which ends the task)
 */
export const TaskSessionStatus = defineMessage(
  "task.session-status",
  z.object({
    taskId: TaskId,
    sessionId: SessionId,
    /**
     * `turn_ended`: a task-mode turn ended and the node now keeps its work (commit, push); the task waits for
     * the node's result, for a bounded time.
     */
    status: z.enum(["running", "failed", "awaiting_followup", "stopped", "turn_ended"]),
    reason: z.string().max(4096).optional()
  }),
  { durable: true }
)
/** from the ingress: the node's `task.result` report */
export const TaskResultReported = defineMessage(
  "task.result-reported",
  z.object({ nodeId: NodeId, result: TaskResult.body }),
  { durable: true }
)
/** a durable timer: the step the task was in did not finish in time */
export const TaskStepTimeout = defineMessage(
  "task.step-timeout",
  z.object({ taskId: TaskId, step: ExecutionStep, attempt: z.number().int().nonnegative() }),
  { durable: true }
)

// ── session (kind "session", id sess_…) ────────────────────────────────────────────────────
export const SessionOpen = defineMessage(
  "session.open",
  z.object({
    sessionId: SessionId,
    projectId: ProjectId,
    taskId: TaskId.optional(),
    workspaceId: WorkspaceId,
    nodeId: NodeId,
    agent: AgentKind,
    mode: TaskMode,
    prompt: z.string().min(1).max(200_000)
  }),
  { durable: true }
)
/** a follow-up from a user: refused (with a reply) when the session is failed or stopped */
export const SessionPromptCommand = defineMessage(
  "session.user-prompt",
  z.object({ sessionId: SessionId, prompt: z.string().min(1).max(200_000) }),
  { durable: true }
)
export const SessionCancelCommand = defineMessage("session.user-cancel", z.object({ sessionId: SessionId }), {
  durable: true
})
export const SessionStopCommand = defineMessage(
  "session.user-stop",
  z.object({
    sessionId: SessionId,
    reason: z.string().max(1000).optional(),
    /**
     * Who stopped it: a stop by its task (cancelled) or its workspace (stopped or deleted, which
     * cancels the task itself) leaves the task alone; any other stop ends the task (a conversation
     * `completed`, a task-mode run `cancelled`).
     */
    from: z.enum(["user", "task", "workspace"]).optional(),
    /** from a workspace stopped, not deleted: its files stay, so a session whose task completed sleeps there */
    keepsFiles: z.boolean().optional()
  }),
  { durable: true }
)
/** from the task actor when the task fails: the session fails with it (event `session.failed`) */
export const SessionFail = defineMessage(
  "session.fail",
  z.object({
    sessionId: SessionId,
    reason: z.string().max(4096),
    /**
     * For a task that failed before its session was opened (its workspace never came up): the
     * session is recorded as failed with this context, so the task still has a failed session.
     */
    unopened: z
      .object({
        projectId: ProjectId,
        taskId: TaskId,
        workspaceId: WorkspaceId,
        nodeId: NodeId.nullable(),
        agent: AgentKind,
        mode: TaskMode
      })
      .optional()
  }),
  { durable: true }
)
/**
 * From the task actor when its task completed: the session sleeps (ADR 0023): its agent process is
 * stopped on the node and it takes no prompts. Idempotent; a session that ended keeps how it ended.
 */
export const SessionSleep = defineMessage(
  "session.sleep",
  z.object({ sessionId: SessionId, reason: z.string().max(1000) }),
  { durable: true }
)
/** What a node reported about a session, as the ingress passes it on. */
export const SessionReportBody = z.discriminatedUnion("type", [
  z.object({ type: z.literal(SessionEvent.type), body: SessionEvent.body }),
  z.object({ type: z.literal(SessionEvents.type), body: SessionEvents.body }),
  z.object({ type: z.literal(SessionActivity.type), body: SessionActivity.body })
])
/** from the ingress: one report, with the report's id as the command's */
export const SessionReport = defineMessage("session.report", z.object({ nodeId: NodeId, report: SessionReportBody }), {
  durable: true
})
/** Most reports in one `session.report-run`. */
export const MAX_REPORTS_PER_RUN = 256
/**
 * From the ingress: consecutive reports of one session by one node that waited together (issue 12),
 * each with its own id. The session actor applies each once, whatever run it comes in (a report
 * redelivered after a failover may come again in a run made up otherwise).
 */
export const SessionReportRun = defineMessage(
  "session.report-run",
  z.object({
    nodeId: NodeId,
    sessionId: SessionId,
    reports: z
      .array(z.object({ id: MessageId, report: SessionReportBody }))
      .min(2)
      .max(MAX_REPORTS_PER_RUN)
  }),
  { durable: true }
)
/**
 * A member's answer to the agent's pending permission request: one of its options, or cancelled.
 * Refused (`permission_not_pending`) when no such request waits (answered, timed out, turn over).
 */
export const SessionAnswerPermission = defineMessage(
  "session.answer-permission",
  z.object({
    sessionId: SessionId,
    requestId: z.string().min(1).max(128),
    /** an option id of the request, or `cancelled` */
    optionId: z.string().min(1).max(256),
    by: UserId
  }),
  { durable: true }
)
/** a durable timer: nobody answered the permission request in time; the project's policy does */
export const SessionPermissionTimeout = defineMessage(
  "session.permission-timeout",
  z.object({ sessionId: SessionId, requestId: z.string().min(1).max(128) }),
  { durable: true }
)
/** a durable timer: check that a `prompting` snapshot still shows signs of life */
export const SessionHeal = defineMessage("session.heal", z.object({ sessionId: SessionId }), { durable: true })
/**
 * From the snapshot check (SessionSnapshotCheck.ts): the session's KV snapshot disagrees with its row (a
 * snapshot write lost with the control plane that committed it): an ended session's snapshot is made to say
 * how it ended; a working one is handed to the healer.
 */
export const SessionCheckSnapshot = defineMessage("session.check-snapshot", z.object({ sessionId: SessionId }), {
  durable: true
})

// ── node (kind "node", id node_…) ──────────────────────────────────────────────────────────
/** from a task that found no ready node: create one with the default provider */
export const NodeProvision = defineMessage(
  "node.provision",
  z.object({
    nodeId: NodeId,
    provider: z.enum(["local"]).default("local"),
    requestedBy: TaskId.optional(),
    /** a task's retry after the node did not become ready in time: ask the provider again */
    retry: z.number().int().positive().optional()
  }),
  { durable: true }
)
/** A node's machine as a task's profile asks for it (ADR 0026); a local node has no size or location. */
export const NodeMachine = z.object({
  provider: z.enum(["local", "hetzner"]),
  size: z.enum(["small", "medium", "large"]).optional(),
  sizeExplicit: z.boolean().default(false),
  location: z.enum(["fsn1", "nbg1", "hel1", "ash", "hil"]).optional()
})
export type NodeMachine = z.output<typeof NodeMachine>

/**
 * From a task: reserve a slot on the node for `workspaceId` (ADR 0022). The node actor, one message at
 * a time, answers `task.node-reserved` (and inserts the workspace, `pending`) or `task.node-full`.
 * With `create`, a node that does not exist yet is created for `ownerId` and provisioned, unless the
 * owner's or the installation's node cap is reached.
 */
export const NodeReserve = defineMessage(
  "node.reserve",
  z.object({
    nodeId: NodeId,
    taskId: TaskId,
    workspaceId: WorkspaceId,
    projectId: ProjectId,
    ownerId: UserId,
    create: z.boolean(),
    /** the task's placement attempt, echoed in `task.node-full` (its backoff) */
    attempt: z.number().int().nonnegative().default(0),
    /**
     * What kind of machine a node created for it must be (the task's agent profile, ADR 0026): the
     * provider, and for a cloud node its size (`explicit` when the profile named it) and location.
     */
    machine: NodeMachine.optional()
  }),
  { durable: true }
)
/** From a task that ended or a workspace that stopped, was deleted or failed: free its slot (idempotent). */
export const NodeRelease = defineMessage("node.release", z.object({ nodeId: NodeId, workspaceId: WorkspaceId }), {
  durable: true
})
/** from the ingress: the node's `node.ready` report */
export const NodeReadyReported = defineMessage(
  "node.ready-reported",
  z.object({ nodeId: NodeId, ready: NodeReady.body }),
  { durable: true }
)
/**
 * From the ingress, at most every few seconds per node: a heartbeat arrived, with what the node says
 * it holds (its workspaces and the sessions whose agent process runs) for the reconciler (ADR 0023).
 */
export const NodeHeartbeatSeen = defineMessage(
  "node.heartbeat-seen",
  z.object({
    nodeId: NodeId,
    at: z.iso.datetime(),
    inventory: z
      .object({
        workspaces: z.array(z.object({ workspaceId: WorkspaceId, status: z.string().max(32) })).max(1000),
        /** the node holds more workspaces than listed: one missing from the list may still be there */
        truncated: z.boolean().optional(),
        agentSessions: z.array(SessionId).max(1000)
      })
      .optional()
  }),
  { durable: true }
)
/**
 * A durable timer set when the node's last slot is released: if it is still idle, it joins its owner's
 * warm pool (`warm`) or, when that is full, is destroyed (ADR 0023).
 */
export const NodeIdleCheck = defineMessage("node.idle-check", z.object({ nodeId: NodeId }), { durable: true })
/** From the node retirer: the provider destroyed the machine (the local provider: stopped its vm-agent). */
export const NodeDestroyed = defineMessage(
  "node.destroyed",
  z.object({ nodeId: NodeId, detail: z.string().max(1000).optional() }),
  { durable: true }
)

// ── workspace (kind "workspace", id ws_…) ──────────────────────────────────────────────────
/**
 * Hand the workspace's create command to its node, once: both the task path and the node-ready
 * path send this; the workspace actor records `dispatched_at` and ignores any later dispatch.
 */
export const WorkspaceDispatch = defineMessage(
  "workspace.dispatch",
  z.object({ workspaceId: WorkspaceId, via: z.enum(["task", "node-ready"]) }),
  { durable: true }
)
/** from the ingress: the node's `workspace.status`, `workspace.bootlog` or `workspace.bootlogs` report */
export const WorkspaceReport = defineMessage(
  "workspace.report",
  z.object({
    nodeId: NodeId,
    report: z.discriminatedUnion("type", [
      z.object({ type: z.literal(WorkspaceStatusReport.type), body: WorkspaceStatusReport.body }),
      z.object({ type: z.literal(BootLog.type), body: BootLog.body }),
      z.object({ type: z.literal(BootLogs.type), body: BootLogs.body })
    ])
  }),
  { durable: true }
)

/**
 * Stop what runs on a node: each of its live workspaces gets a `workspace.user-stop`. The node stays
 * up and takes new work.
 */
export const NodeStop = defineMessage(
  "node.stop",
  z.object({ nodeId: NodeId, reason: z.string().max(1000).optional() }),
  { durable: true }
)
/**
 * Retire a node: it takes no new work (`destroying`), its workspaces are deleted, and the event
 * `node.destroy-requested` asks its provider to destroy the machine (the local provider does not
 * act on it yet: its vm-agent runs until the control plane stops, and is not started again).
 */
export const NodeDestroy = defineMessage(
  "node.destroy",
  z.object({ nodeId: NodeId, reason: z.string().max(1000).optional() }),
  { durable: true }
)

/**
 * From a user or the node actor: stop the workspace's processes and keep its files (the node's
 * `workspace.stop`). Its live sessions are stopped and its task, if not ended, is cancelled.
 * Refused (`invalid_transition`) for a workspace that was never handed to its node, or was deleted.
 */
export const WorkspaceStopCommand = defineMessage(
  "workspace.user-stop",
  z.object({ workspaceId: WorkspaceId, reason: z.string().max(1000).optional() }),
  { durable: true }
)
/**
 * Delete the workspace and its files (the node's `workspace.stop` then `workspace.delete`), with its
 * sessions and task as for a stop. A workspace never handed to its node is deleted at once.
 */
export const WorkspaceDeleteCommand = defineMessage(
  "workspace.user-delete",
  z.object({ workspaceId: WorkspaceId, reason: z.string().max(1000).optional() }),
  { durable: true }
)

/**
 * From the task actor when its task ended: the workspace stops once idle (no active session) for
 * `SAM_WORKSPACE_IDLE_MS`; one never handed to its node is deleted at once (ADR 0023).
 */
export const WorkspaceTaskEnded = defineMessage(
  "workspace.task-ended",
  z.object({ workspaceId: WorkspaceId, taskId: TaskId, status: TaskStatus }),
  { durable: true }
)
/** A durable timer of an idle workspace: stop it if no session in it is active. */
export const WorkspaceIdleTimeout = defineMessage("workspace.idle-timeout", z.object({ workspaceId: WorkspaceId }), {
  durable: true
})
/**
 * A durable timer of a workspace that ended (stopped, failed): still so, it is deleted, its files and uid given back
 * on its node (ADR 0052).
 */
export const WorkspaceEndedExpiry = defineMessage("workspace.ended-expiry", z.object({ workspaceId: WorkspaceId }), {
  durable: true
})
/**
 * From the node actor's reconciler: the node's heartbeats no longer list this workspace, which the
 * ledger says runs there; it is marked `error` with the reason (ADR 0023).
 */
export const WorkspaceMissing = defineMessage(
  "workspace.missing",
  z.object({
    workspaceId: WorkspaceId,
    nodeId: NodeId,
    reason: z.string().max(1000),
    /** what the node still holds of it: nothing (its node deleted, or gone from its inventory), or it stopped */
    found: z.enum(["nothing", "stopped"]).optional()
  }),
  { durable: true }
)

/**
 * From the ingress: a node refused a command (its `command.rejected`) and changed nothing. The
 * ingress found the refused message in the outbox, addressed to that very node, so it is a command
 * the control plane sent there; it goes to the actor of the entity the command named.
 */
const rejection = {
  nodeId: NodeId,
  /** the refused command's message id */
  messageId: z.string().max(128),
  code: CommandRejected.body.shape.code,
  /** the node's reason */
  message: z.string().max(4096)
}
/** A workspace command refused: a refused `workspace.create` leaves the workspace `error` with the reason. */
export const WorkspaceCommandRejected = defineMessage(
  "workspace.command-rejected",
  z.object({
    workspaceId: WorkspaceId,
    commandType: z.enum(["workspace.create", "workspace.stop", "workspace.delete"]),
    ...rejection
  }),
  { durable: true }
)
/**
 * A session command refused: a refused `session.start` fails the session, a refused
 * `session.prompt` ends that prompt's turn as failed (the session fails when the node does not
 * have it), a refused `session.permission-answer` (`requestId`) is recorded as never delivered; the
 * reason goes into the transcript.
 */
export const SessionCommandRejected = defineMessage(
  "session.command-rejected",
  z.object({
    sessionId: SessionId,
    commandType: z.enum([
      "session.start",
      "session.prompt",
      "session.cancel",
      "session.stop",
      "session.permission-answer"
    ]),
    /** the refused prompt's epoch (`session.start` is epoch 1) */
    promptEpoch: z.number().int().nonnegative().optional(),
    /** the permission request a refused `session.permission-answer` answered */
    requestId: z.string().max(128).optional(),
    ...rejection
  }),
  { durable: true }
)

export const nodeActorCommands = registry(
  NodeProvision,
  NodeReadyReported,
  NodeHeartbeatSeen,
  NodeStop,
  NodeDestroy,
  NodeReserve,
  NodeRelease,
  NodeIdleCheck,
  NodeDestroyed
)
export const workspaceCommands = registry(
  WorkspaceDispatch,
  WorkspaceReport,
  WorkspaceStopCommand,
  WorkspaceDeleteCommand,
  WorkspaceCommandRejected,
  WorkspaceTaskEnded,
  WorkspaceIdleTimeout,
  WorkspaceEndedExpiry,
  WorkspaceMissing
)

export const taskCommands = registry(
  TaskSubmit,
  TaskCancel,
  TaskRetry,
  TaskNodeAssigned,
  TaskWorkspaceStatus,
  TaskSessionStatus,
  TaskResultReported,
  TaskStepTimeout,
  TaskNodeReserved,
  TaskNodeFull,
  TaskPlace
)
export const sessionCommands = registry(
  SessionOpen,
  SessionPromptCommand,
  SessionCancelCommand,
  SessionStopCommand,
  SessionFail,
  SessionReport,
  SessionReportRun,
  SessionHeal,
  SessionCheckSnapshot,
  SessionCommandRejected,
  SessionAnswerPermission,
  SessionPermissionTimeout,
  SessionSleep
)
