import { z } from "zod"
import { BootLogEntry } from "../api/NodeBoot.js"
import { defineMessage } from "../Envelope.js"
import { NodeId } from "../Ids.js"
import { MemberRole, PermissionPolicy } from "./ControlProtocol.js"
import { BootLog } from "./NodeProtocol.js"
import { ExecutionStep, NodeStatus, TaskStatus, WorkspaceStatus } from "./States.js"

/**
 * The domain events the actors publish on `sam.evt.<projectId|system>.<kind>.<id>.<type>`: part of the
 * contract, read by the gateway's feed, the CLI and programs, so defined here rather than in the actors.
 */

export const TaskStatusEvent = defineMessage(
  "task.status",
  z.object({
    taskId: z.string(),
    status: TaskStatus,
    step: ExecutionStep.nullable(),
    errorStep: z.string().nullable(),
    errorReason: z.string().nullable(),
    nodeId: z.string().nullable(),
    workspaceId: z.string().nullable(),
    sessionId: z.string().nullable(),
    branch: z.string().nullable(),
    /** why the task waits, e.g. for node capacity (ADR 0022) */
    reason: z.string().optional()
  }),
  { durable: true }
)

export const ProjectCreated = defineMessage(
  "project.created",
  z.object({ projectId: z.string(), name: z.string(), repoUrl: z.string() }),
  { durable: true }
)
export const ProjectMemberAdded = defineMessage(
  "project.member-added",
  z.object({ projectId: z.string(), userId: z.string(), role: MemberRole, by: z.string() }),
  { durable: true }
)
export const ProjectPermissionsChanged = defineMessage(
  "project.permissions-changed",
  z.object({
    projectId: z.string(),
    policy: PermissionPolicy,
    timeoutSeconds: z.number().int().positive(),
    by: z.string()
  }),
  { durable: true }
)
export const ProjectMemberRemoved = defineMessage(
  "project.member-removed",
  z.object({ projectId: z.string(), userId: z.string(), by: z.string() }),
  { durable: true }
)

/** Published when a node must be provisioned; the provider reactor acts on it (Provisioner.ts). */
export const NodeProvisionRequested = defineMessage(
  "node.provision-requested",
  z.object({ nodeId: NodeId, provider: z.enum(["local", "hetzner", "joined"]) }),
  { durable: true }
)
export const NodeStatusEvent = defineMessage(
  "node.status",
  z.object({ nodeId: z.string(), status: NodeStatus, ready: z.boolean() }),
  { durable: true }
)
/** A user asked to stop what runs on the node; each workspace named was sent `workspace.user-stop`. */
export const NodeStopRequested = defineMessage(
  "node.stop-requested",
  z.object({ nodeId: NodeId, workspaces: z.array(z.string()), reason: z.string().optional() }),
  { durable: true }
)
/**
 * A user retired the node: for its provider to destroy the machine. The local provider does not act
 * on it yet; the node is `destroying`, takes no new work, and is not restarted with the control plane.
 */
export const NodeDestroyRequested = defineMessage(
  "node.destroy-requested",
  z.object({
    nodeId: NodeId,
    provider: z.enum(["local", "hetzner", "joined"]),
    workspaces: z.array(z.string()),
    reason: z.string().optional()
  }),
  { durable: true }
)

export const WorkspaceEvent = defineMessage(
  "workspace.status",
  z.object({
    workspaceId: z.string(),
    status: WorkspaceStatus,
    reason: z.string().optional(),
    via: z.string().optional()
  }),
  { durable: true }
)
export const WorkspaceBootLogEvent = defineMessage("workspace.bootlog", BootLog.body, { durable: true })
/**
 * New lines of a node's boot log, as they were stored (on `sam.evt.system.node.<nodeId>.node.bootlog`,
 * volatile: the boot log itself is in the ledger, GET /nodes/:id/boot-log). The feed hands it to whoever may
 * see the node.
 */
export const NodeBootLogEvent = defineMessage(
  "node.bootlog",
  z.object({ nodeId: NodeId, entries: z.array(BootLogEntry) }),
  { durable: false }
)

/**
 * A report that names an entity the ledger does not place on the reporting node is dropped: it
 * changes nothing, and this event (on `sam.evt.system.node.<nodeId>.report.dropped`) records it.
 */
export const ReportDropped = defineMessage(
  "report.dropped",
  z.object({ nodeId: z.string(), kind: z.string(), entityId: z.string(), reportType: z.string(), reason: z.string() }),
  { durable: true }
)
