import { SqlClient } from "@effect/sql"
import { Domain, defineMessage, NodeId } from "@sam/bus"
import { Effect } from "effect"
import { z } from "zod"
import * as Actor from "../ActorKind.js"
import { HEARTBEAT_FRESH_SECONDS, NodeRef, TaskRef, WorkspaceRef } from "./Kinds.js"

const { ControlProtocol: C } = Domain

/** Published when a node must be provisioned; the provider reactor acts on it (Provisioner.ts). */
export const NodeProvisionRequested = defineMessage(
  "node.provision-requested",
  z.object({ nodeId: NodeId, provider: z.enum(["local"]) }),
  { durable: true }
)
export const NodeStatusEvent = defineMessage(
  "node.status",
  z.object({ nodeId: z.string(), status: Domain.NodeStatus, ready: z.boolean() }),
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
    provider: z.enum(["local", "hetzner"]),
    workspaces: z.array(z.string()),
    reason: z.string().optional()
  }),
  { durable: true }
)

interface Row {
  readonly id: string
  readonly status: Domain.NodeStatus
  readonly provider: "local" | "hetzner"
  readonly providerRequestId: string | null
  readonly agentReadyAt: Date | null
  readonly lastHeartbeatAt: Date | null
  readonly capabilities: unknown
}
interface State {
  readonly row: Row | null
  /** workspaces placed on this node that were never handed to it */
  readonly undispatched: ReadonlyArray<string>
  /** tasks waiting for this node to be ready */
  readonly waiting: ReadonlyArray<string>
  /** its workspaces that are not deleted, with their status */
  readonly workspaces: ReadonlyArray<{ readonly id: string; readonly status: Domain.WorkspaceStatus }>
}

/** Workspaces a stop applies to: handed to the node and not stopped or on their way there. */
const STOPPABLE: ReadonlySet<Domain.WorkspaceStatus> = new Set(["creating", "running", "recovery", "sleeping"])

const fresh = (row: Row) =>
  row.agentReadyAt !== null &&
  row.lastHeartbeatAt !== null &&
  Date.now() - row.lastHeartbeatAt.getTime() < HEARTBEAT_FRESH_SECONDS * 1000

const systemEvent = (row: Row, envelope: Parameters<typeof Actor.event>[3]) =>
  Actor.event("system", "node", row.id, envelope)

/**
 * A node: provisioned through its provider (the request is recorded before the side effect), ready
 * only after its agent's ready report and a fresh heartbeat. Then — the node-ready path — it hands
 * over the workspaces placed on it and tells waiting tasks, whichever of them got there first.
 */
export const NodeKind = Actor.make({
  ...NodeRef,
  id: NodeId,
  commands: C.nodeActorCommands.defs,
  load: (id) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql<Row>`
        SELECT id, status, provider, provider_request_id, agent_ready_at, last_heartbeat_at, capabilities
        FROM nodes WHERE id = ${id} FOR UPDATE`
      const undispatched = yield* sql<{ id: string }>`
        SELECT id FROM workspaces WHERE node_id = ${id} AND dispatched_at IS NULL AND status = 'pending'`
      const waiting = yield* sql<{ id: string }>`
        SELECT id FROM tasks WHERE node_id = ${id} AND status = 'queued' AND execution_step = 'node_provisioning'`
      const workspaces = yield* sql<{ id: string; status: Domain.WorkspaceStatus }>`
        SELECT id, status FROM workspaces WHERE node_id = ${id} AND status <> 'deleted' ORDER BY created_at`
      const state: State = {
        row: rows[0] ?? null,
        undispatched: undispatched.map((r) => r.id),
        waiting: waiting.map((r) => r.id),
        workspaces
      }
      return state
    }),
  save: (id, state) =>
    Effect.gen(function* () {
      const row = state.row
      if (row === null) return
      const sql = yield* SqlClient.SqlClient
      yield* sql`
        UPDATE nodes SET status = ${row.status}, provider_request_id = ${row.providerRequestId},
          agent_ready_at = ${row.agentReadyAt}, last_heartbeat_at = ${row.lastHeartbeatAt},
          health = ${row.lastHeartbeatAt === null ? "stale" : "healthy"},
          capabilities = ${JSON.stringify(row.capabilities ?? {})}::jsonb, updated_at = now(), version = version + 1
        WHERE id = ${id}`
    }),
  handle: (state, command) => {
    const row = state.row
    if (row === null) return Effect.succeed({ state, reply: { ok: false, code: "not_found" } })
    /** Once ready: the node-ready path of dispatch, and the tasks that waited. */
    const handOver = (next: Row) =>
      fresh(next) && next.status !== "destroying"
        ? [
            ...state.undispatched.map((workspaceId) =>
              Actor.to(
                WorkspaceRef,
                workspaceId,
                C.WorkspaceDispatch.make({ workspaceId: workspaceId as never, via: "node-ready" })
              )
            ),
            ...state.waiting.map((taskId) =>
              Actor.to(TaskRef, taskId, C.TaskNodeAssigned.make({ taskId: taskId as never, nodeId: next.id as never }))
            )
          ]
        : []
    switch (command.type) {
      case "node.provision": {
        // Asked once; asked again only by a retry while the node is still not up (providers are idempotent).
        const again = command.body.retry !== undefined && row.status === "provisioning" && row.agentReadyAt === null
        if (row.providerRequestId !== null && !again) return Effect.succeed({ state })
        const next: Row = { ...row, providerRequestId: command.id }
        return Effect.succeed({
          state: { ...state, row: next },
          events: [systemEvent(next, NodeProvisionRequested.make({ nodeId: row.id as never, provider: "local" }))]
        })
      }
      case "node.ready-reported": {
        const next: Row = {
          ...row,
          status: row.status === "provisioning" ? "running" : row.status,
          agentReadyAt: new Date(),
          capabilities: command.body.ready.capabilities
        }
        return Effect.succeed({
          state: { ...state, row: next },
          send: handOver(next),
          events: [systemEvent(next, NodeStatusEvent.make({ nodeId: row.id, status: next.status, ready: fresh(next) }))]
        })
      }
      case "node.heartbeat-seen": {
        const next: Row = { ...row, lastHeartbeatAt: new Date(command.body.at) }
        return Effect.succeed({ state: { ...state, row: next }, send: handOver(next) })
      }
      case "node.stop": {
        const reason = command.body.reason
        const stopping = state.workspaces.filter((w) => STOPPABLE.has(w.status)).map((w) => w.id)
        return Effect.succeed({
          state,
          send: stopping.map((workspaceId) =>
            Actor.to(
              WorkspaceRef,
              workspaceId,
              C.WorkspaceStopCommand.make({
                workspaceId: workspaceId as never,
                reason: reason ?? "its node was stopped"
              })
            )
          ),
          events: [
            systemEvent(
              row,
              NodeStopRequested.make({
                nodeId: row.id as never,
                workspaces: stopping,
                ...(reason === undefined ? {} : { reason })
              })
            )
          ],
          reply: { ok: true, workspaces: stopping }
        })
      }
      case "node.destroy": {
        const transition = Domain.nodeTransition(row.status, "destroying")
        if (transition._tag === "Unchanged") {
          return Effect.succeed({ state, reply: { ok: true, duplicate: true, workspaces: [] } })
        }
        if (transition._tag === "Refused") {
          return Effect.succeed({
            state,
            reply: { ok: false, code: "invalid_transition", message: transition.message }
          })
        }
        const reason = command.body.reason
        const next: Row = { ...row, status: "destroying" }
        const deleting = state.workspaces.map((w) => w.id)
        return Effect.succeed({
          state: { ...state, row: next },
          send: deleting.map((workspaceId) =>
            Actor.to(
              WorkspaceRef,
              workspaceId,
              C.WorkspaceDeleteCommand.make({
                workspaceId: workspaceId as never,
                reason: reason ?? "its node was deleted"
              })
            )
          ),
          events: [
            systemEvent(next, NodeStatusEvent.make({ nodeId: row.id, status: next.status, ready: false })),
            systemEvent(
              next,
              NodeDestroyRequested.make({
                nodeId: row.id as never,
                provider: row.provider,
                workspaces: deleting,
                ...(reason === undefined ? {} : { reason })
              })
            )
          ],
          reply: { ok: true, workspaces: deleting }
        })
      }
    }
  }
})
