import { z } from "zod"
import { NodeHealth, NodeStatus } from "../domain/States.js"
import { NodeId, UserId, WorkspaceId } from "../Ids.js"
import { endpoint } from "./Endpoint.js"

/**
 * A node: a machine running our vm-agent. Never carries its credentials or provider secrets.
 * `ready` is what dispatch waits for: the agent reported ready and its last heartbeat is fresh.
 */
export const Node = z.object({
  id: NodeId,
  provider: z.enum(["local", "hetzner", "joined"]),
  status: NodeStatus,
  /** `stale` when its last heartbeat is not fresh, whatever was stored */
  health: NodeHealth,
  ready: z.boolean(),
  ownerId: UserId.nullable(),
  agentReadyAt: z.iso.datetime().nullable(),
  lastHeartbeatAt: z.iso.datetime().nullable(),
  capabilities: z
    .object({ docker: z.boolean(), hostRuntime: z.boolean(), agents: z.array(z.string()) })
    .partial()
    .nullable(),
  maxWorkspaces: z.number().int().positive(),
  /** its workspaces that are not stopped or deleted, of projects I am a member of */
  activeWorkspaces: z.number().int().nonnegative(),
  errorReason: z.string().nullable(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime()
})
export type Node = z.infer<typeof Node>

export const NodeList = z.object({ nodes: z.array(Node) })

/**
 * What a stop or delete did. `workspaces` were told to stop (or be deleted). For a delete,
 * `machine` says what happens to the machine itself: `destroy_requested` when its provider will
 * destroy it; `kept` when the provider cannot yet (the local one), with `note` saying what happens.
 */
export const NodeChange = z.object({
  node: Node,
  workspaces: z.array(WorkspaceId),
  machine: z.enum(["running", "destroy_requested", "kept"]),
  note: z.string()
})

const NodeParams = z.object({ nodeId: NodeId })

export const NodeEndpoints = {
  listNodes: endpoint({
    method: "GET",
    path: "/nodes",
    summary: "The nodes I can see: mine, and those hosting a workspace of a project I am a member of",
    tag: "nodes",
    response: NodeList
  }),
  getNode: endpoint({
    method: "GET",
    path: "/nodes/:nodeId",
    summary: "One node",
    tag: "nodes",
    params: NodeParams,
    response: Node
  }),
  stopNode: endpoint({
    method: "POST",
    path: "/nodes/:nodeId/stop",
    summary: "Stop every workspace on a node; the node stays up and takes new work",
    tag: "nodes",
    params: NodeParams,
    response: NodeChange,
    status: 202
  }),
  deleteNode: endpoint({
    method: "DELETE",
    path: "/nodes/:nodeId",
    summary: "Retire a node: it takes no new work, its workspaces are deleted, its provider is asked to destroy it",
    tag: "nodes",
    params: NodeParams,
    response: NodeChange,
    status: 202
  })
}
