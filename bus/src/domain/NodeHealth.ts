import { z } from "zod"
import { NodeId, SessionId, WorkspaceId } from "../Ids.js"

/**
 * The latest heartbeat of a node, in KV `sam_node_health` under the node id, written by the report
 * ingress from the node's core `sam.agent.<nodeId>.hb`. `receivedAt` is the control plane's clock
 * (readers judge freshness with it, never with the node's); `promptingSessions` is the node's own
 * word on which sessions have a turn running, the healer's evidence of life.
 */
export const NodeHealthRecord = z.object({
  nodeId: NodeId,
  load1: z.number().nonnegative(),
  memoryPercent: z.number().min(0).max(100),
  diskPercent: z.number().min(0).max(100),
  activeWorkspaces: z.number().int().nonnegative(),
  promptingSessions: z.array(SessionId).max(1000),
  /** the node's public curve key, for sealing what only it may read (ADR 0024) */
  xkey: z.string().max(64).optional(),
  workspaces: z
    .array(z.object({ workspaceId: WorkspaceId, status: z.string().max(32) }))
    .max(1000)
    .optional(),
  /** the node holds more workspaces than listed (see the heartbeat's `workspacesTruncated`) */
  workspacesTruncated: z.boolean().optional(),
  agentSessions: z.array(SessionId).max(1000).optional(),
  /** when the node sent it */
  sentAt: z.iso.datetime(),
  receivedAt: z.iso.datetime()
})
export type NodeHealthRecord = z.infer<typeof NodeHealthRecord>
