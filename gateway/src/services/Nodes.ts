import { SqlClient } from "@effect/sql"
import { Api, Domain, type NodeId } from "@sam/bus"
import { Effect } from "effect"
import { z } from "zod"
import { requireNodeVisible } from "../Access.js"
import { ApiError } from "../ApiError.js"
import type { Principal } from "../Auth.js"
import * as Command from "../Command.js"

const C = Domain.ControlProtocol

/** A node as its owner and the members of projects on it see it: no provider request id, nothing added later. */
const NodeView = Domain.Rows.NodeRow.pick({
  id: true,
  provider: true,
  status: true,
  ownerId: true,
  agentReadyAt: true,
  lastHeartbeatAt: true,
  maxWorkspaces: true
}).extend({
  health: Domain.NodeHealth,
  fresh: z.boolean(),
  capabilities: Api.Node.shape.capabilities,
  activeWorkspaces: z.coerce.number(),
  errorReason: z.string().nullable(),
  createdAt: z.date(),
  updatedAt: z.date()
})
type NodeRow = z.output<typeof NodeView>
const decodeNodes = Domain.Rows.decodeRows(NodeView, "node")

const iso = (value: Date | null) => (value === null ? null : value.toISOString())

/** Only named columns: a node row's provider request id and anything added later stay out. */
const toNode = (row: NodeRow): z.input<typeof Api.Node> => ({
  id: row.id,
  provider: row.provider,
  status: row.status,
  health: row.fresh ? row.health : "stale",
  ready: row.fresh && row.agentReadyAt !== null && (row.status === "running" || row.status === "warm"),
  ownerId: row.ownerId,
  agentReadyAt: iso(row.agentReadyAt),
  lastHeartbeatAt: iso(row.lastHeartbeatAt),
  capabilities: row.capabilities,
  maxWorkspaces: row.maxWorkspaces,
  activeWorkspaces: row.activeWorkspaces,
  errorReason: row.errorReason,
  createdAt: row.createdAt.toISOString(),
  updatedAt: row.updatedAt.toISOString()
})

/** Nodes `userId` can see (design §9): its own, and those hosting a workspace of a project it is a member of. */
const select = (sql: SqlClient.SqlClient, userId: string, nodeId?: string) =>
  sql`
    SELECT n.id, n.provider, n.status, n.health, n.owner_id, n.agent_ready_at, n.last_heartbeat_at, n.capabilities,
      n.max_workspaces, n.error_reason, n.created_at, n.updated_at,
      (n.last_heartbeat_at IS NOT NULL
        AND n.last_heartbeat_at > now() - make_interval(secs => ${Domain.HEARTBEAT_FRESH_SECONDS})) AS fresh,
      (SELECT count(*) FROM workspaces w JOIN project_members m ON m.project_id = w.project_id AND m.user_id = ${userId}
        WHERE w.node_id = n.id AND w.status NOT IN ('stopped', 'deleted')) AS active_workspaces
    FROM nodes n
    WHERE (n.owner_id = ${userId} OR EXISTS (
        SELECT 1 FROM workspaces w JOIN project_members m ON m.project_id = w.project_id AND m.user_id = ${userId}
        WHERE w.node_id = n.id))
      ${nodeId === undefined ? sql`` : sql`AND n.id = ${nodeId}`}
    ORDER BY n.created_at DESC, n.id DESC`.pipe(Effect.orDie, Effect.map(decodeNodes))

export const listNodes = Effect.fn("Nodes.list")(function* (principal: Principal) {
  const sql = yield* SqlClient.SqlClient
  return { nodes: (yield* select(sql, principal.userId)).map(toNode) }
})

const one = (principal: Principal, nodeId: NodeId) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* select(sql, principal.userId, nodeId)
    if (row === undefined) return yield* new ApiError({ code: "not_found", message: `no node ${nodeId}` })
    return toNode(row)
  })

export const getNode = Effect.fn("Nodes.get")(function* (principal: Principal, nodeId: NodeId) {
  yield* requireNodeVisible(principal, nodeId)
  return yield* one(principal, nodeId)
})

/**
 * Who may stop or retire a node: its owner; for a node without one (the control plane's shared
 * nodes), a user who owns every project with a live workspace on it, so nobody stops others' work.
 */
const requireNodeControl = Effect.fn("Nodes.requireControl")(function* (principal: Principal, nodeId: NodeId) {
  yield* requireNodeVisible(principal, nodeId)
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ ownerId: string | null; foreignWork: boolean }>`
    SELECT n.owner_id, EXISTS (
      SELECT 1 FROM workspaces w
      LEFT JOIN project_members m ON m.project_id = w.project_id AND m.user_id = ${principal.userId} AND m.role = 'owner'
      WHERE w.node_id = n.id AND w.status <> 'deleted' AND m.user_id IS NULL) AS foreign_work
    FROM nodes n WHERE n.id = ${nodeId}`.pipe(Effect.orDie)
  if (row === undefined) return yield* new ApiError({ code: "not_found", message: `no node ${nodeId}` })
  const allowed = row.ownerId === null ? !row.foreignWork : row.ownerId === principal.userId
  if (!allowed) {
    return yield* new ApiError({
      code: "forbidden",
      message:
        row.ownerId === null
          ? `node ${nodeId} runs workspaces of projects you do not own`
          : `only the owner of node ${nodeId} may do this`
    })
  }
})

const KEPT_NOTE =
  "No provider destroys machines yet: the node is marked destroying and takes no new work, its workspaces are " +
  "being deleted, and the request is recorded (event node.destroy-requested). A local node's vm-agent keeps " +
  "running until the control plane stops and is not started again."

/**
 * Stop a node's workspaces (`stop`), or retire the node (`delete`), through the node actor, which
 * sends each workspace its stop or delete.
 */
export const change = Effect.fn("Nodes.change")(function* (
  principal: Principal,
  nodeId: NodeId,
  kind: "stop" | "delete"
) {
  yield* requireNodeControl(principal, nodeId)
  const reason = `${kind === "stop" ? "stopped" : "deleted"} by ${principal.userId}`
  const command = yield* Command.build(() =>
    kind === "stop" ? C.NodeStop.make({ nodeId, reason }) : C.NodeDestroy.make({ nodeId, reason })
  )
  const { workspaces } = yield* Command.ask(Domain.NodeRef, nodeId, command, Domain.Replies.NodeChanged)
  return {
    node: yield* one(principal, nodeId),
    workspaces,
    machine: kind === "stop" ? ("running" as const) : ("kept" as const),
    note: kind === "stop" ? "the node stays up and takes new work" : KEPT_NOTE
  }
})
