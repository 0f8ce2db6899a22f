import { SqlClient } from "@effect/sql"
import { Domain, defineMessage, type Envelope, NodeId, SessionId, Subjects, WorkspaceId } from "@sam/bus"
import { Effect } from "effect"
import { z } from "zod"
import * as Actor from "../ActorKind.js"
import { WorkspaceRef } from "./Kinds.js"

const { ControlProtocol: C, NodeProtocol: N } = Domain

/**
 * The audit line of the reconciler (ADR 0023), on `sam.evt.system.node.<nodeId>.reconciled`: what it
 * found that has no live owner in the ledger (or a ledger row whose thing is gone), and what it did.
 */
export const ReconcileAudit = defineMessage(
  "reconciled",
  z.object({
    nodeId: z.string(),
    kind: z.enum(["workspace", "agent"]),
    entityId: z.string(),
    found: z.string().max(1000),
    action: z.enum(["stopped", "deleted", "marked_error"])
  }),
  { durable: true }
)

/**
 * How long a ledger row must have kept its status before the reconciler acts on a disagreement with
 * the node (a command may be on its way; a heartbeat may predate it). `SAM_RECONCILE_SETTLE_MS`.
 */
export const settleMs = () => Number(process.env.SAM_RECONCILE_SETTLE_MS ?? 30_000)

type Inventory = NonNullable<z.output<typeof C.NodeHeartbeatSeen.body>["inventory"]>

const LedgerWorkspace = z.object({
  id: WorkspaceId,
  nodeId: NodeId.nullable(),
  status: Domain.WorkspaceStatus,
  dispatched: z.boolean(),
  settled: z.boolean()
})
type LedgerWorkspace = z.output<typeof LedgerWorkspace>
const decodeWorkspaces = Domain.Rows.decodeRows(LedgerWorkspace, "workspace")
const LedgerSession = z.object({
  id: SessionId,
  nodeId: NodeId.nullable(),
  status: Domain.SessionStatus,
  settled: z.boolean()
})
type LedgerSession = z.output<typeof LedgerSession>
const decodeSessions = Domain.Rows.decodeRows(LedgerSession, "session")

export declare namespace Reconciled {
  /** What the ledger says about everything the node holds, and everything it should hold. */
  interface Ledger {
    readonly workspaces: ReadonlyArray<LedgerWorkspace>
    readonly sessions: ReadonlyArray<LedgerSession>
  }
}

export const Reconciled = {
  /**
   * The node's workspaces in the ledger, and the rows of whatever the node reports holding. A row is
   * settled when it kept its status for the settle time before the inventory was received (`at`), not
   * before now: a heartbeat handled late (a busy shard) must not find a workspace that started after its
   * inventory was taken missing from it.
   */
  load: (nodeId: string, inventory: Inventory, at: string) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const reported = inventory.workspaces.map((w) => w.workspaceId as string)
      const settle = settleMs() / 1000
      const workspaces = yield* sql`
        SELECT id, node_id, status, dispatched_at IS NOT NULL AS dispatched,
          updated_at < ${at}::timestamptz - make_interval(secs => ${settle}) AS settled
        FROM workspaces WHERE (node_id = ${nodeId} AND status <> 'deleted') OR id IN ${sql.in(reported.length > 0 ? reported : [""])}`.pipe(
        Effect.map(decodeWorkspaces)
      )
      const agents = inventory.agentSessions as ReadonlyArray<string>
      const sessions =
        agents.length === 0
          ? []
          : yield* sql`
              SELECT id, node_id, status, updated_at < ${at}::timestamptz - make_interval(secs => ${settle}) AS settled
              FROM sessions WHERE id IN ${sql.in(agents)}`.pipe(Effect.map(decodeSessions))
      return { workspaces, sessions } satisfies Reconciled.Ledger
    })
}

/** Workspace statuses in which the node is expected to hold it. */
const EXPECTED: ReadonlySet<Domain.WorkspaceStatus> = new Set(["running", "recovery"])
/** Ledger statuses in which a workspace the node holds has no live owner. */
const OWNERLESS: ReadonlySet<Domain.WorkspaceStatus> = new Set(["stopped", "deleted", "error"])

/**
 * Compare a node's inventory with the ledger (ADR 0023). What the node holds without a live owner is
 * stopped or deleted there; a workspace the ledger says runs there and the node does not hold is
 * marked `error`. Only rows that kept their status for `settleMs` count, so a command or report on its
 * way is never raced. Each finding is an audit event and a log line.
 */
export const reconcile = (nodeId: string, inventory: Inventory, ledger: Reconciled.Ledger) => {
  const send: Array<Actor.Outgoing> = []
  const events: Array<Actor.Outgoing> = []
  const lines: Array<string> = []
  const toNode = (envelope: Envelope) => send.push({ subject: Subjects.nodeCommand(nodeId, envelope.type), envelope })
  const audit = (body: Omit<z.input<typeof ReconcileAudit.body>, "nodeId">) => {
    events.push({
      subject: Subjects.event("system", "node", nodeId, ReconcileAudit.type),
      envelope: ReconcileAudit.make({ nodeId, ...body })
    })
    lines.push(`reconciler: node ${nodeId}: ${body.kind} ${body.entityId}: ${body.found}; ${body.action}`)
  }
  const rows = new Map(ledger.workspaces.map((w) => [w.id, w]))
  const held = new Set(inventory.workspaces.map((w) => w.workspaceId as string))
  // A node that holds more workspaces than its heartbeat lists: one the list leaves out may be there, so nothing is
  // concluded from its absence (what is listed is still acted on).
  const complete = inventory.truncated !== true
  for (const { workspaceId, status } of inventory.workspaces) {
    const row = rows.get(workspaceId)
    if (row === undefined || row.nodeId !== nodeId) {
      toNode(N.WorkspaceStop.make({ workspaceId }))
      toNode(N.WorkspaceDelete.make({ workspaceId }))
      audit({
        kind: "workspace",
        entityId: workspaceId,
        found: row === undefined ? "not in the ledger" : "the ledger places it on another node",
        action: "deleted"
      })
    } else if (row.settled && OWNERLESS.has(row.status) && status === "running") {
      toNode(row.status === "deleted" ? N.WorkspaceDelete.make({ workspaceId }) : N.WorkspaceStop.make({ workspaceId }))
      audit({
        kind: "workspace",
        entityId: workspaceId,
        found: `running on the node while the ledger says ${row.status}`,
        action: row.status === "deleted" ? "deleted" : "stopped"
      })
    }
  }
  for (const row of ledger.workspaces) {
    if (
      !complete ||
      row.nodeId !== nodeId ||
      !row.dispatched ||
      !row.settled ||
      !EXPECTED.has(row.status) ||
      held.has(row.id)
    )
      continue
    const reason = `its node ${nodeId} no longer has it (reconciler)`
    send.push(Actor.to(WorkspaceRef, row.id, C.WorkspaceMissing.make({ workspaceId: row.id, nodeId, reason })))
    audit({
      kind: "workspace",
      entityId: row.id,
      found: `${row.status} in the ledger, not on the node`,
      action: "marked_error"
    })
  }
  // A stop whose end the node never reported (the report lost, the node down when it was sent): what the node
  // holds now says how it ended, and one it still runs is sent the stop again.
  const onNode = new Map(inventory.workspaces.map((w) => [w.workspaceId as string, w.status]))
  for (const row of ledger.workspaces) {
    if (row.nodeId !== nodeId || row.status !== "stopping" || !row.settled) continue
    const status = onNode.get(row.id)
    if (status === undefined && !complete) continue
    // still being created there: the stop waits behind the create (whose clone cannot hang for ever), and its end
    // is reported then
    if (status === "creating") continue
    if (status === "running") {
      toNode(N.WorkspaceStop.make({ workspaceId: row.id }))
      audit({
        kind: "workspace",
        entityId: row.id,
        found: "stopping in the ledger, running on the node",
        action: "stopped"
      })
      continue
    }
    const found = status === undefined ? "nothing" : "stopped"
    const reason = `its node ${nodeId} ${status === undefined ? "no longer has it" : `holds it ${status}`} (reconciler)`
    send.push(Actor.to(WorkspaceRef, row.id, C.WorkspaceMissing.make({ workspaceId: row.id, nodeId, reason, found })))
    audit({
      kind: "workspace",
      entityId: row.id,
      found: `stopping in the ledger, ${status === undefined ? "not on the node" : `${status} on the node`}`,
      action: status === undefined ? "deleted" : "stopped"
    })
  }
  const sessions = new Map(ledger.sessions.map((s) => [s.id, s]))
  for (const sessionId of inventory.agentSessions) {
    const row = sessions.get(sessionId)
    const ownerless = row === undefined || row.nodeId !== nodeId || (row.settled && row.status !== "active")
    if (!ownerless) continue
    toNode(N.SessionStop.make({ sessionId }))
    audit({
      kind: "agent",
      entityId: sessionId,
      found:
        row === undefined
          ? "an agent process for a session not in the ledger"
          : row.nodeId !== nodeId
            ? "an agent process for a session the ledger places on another node"
            : `an agent process for a session that is ${row.status}`,
      action: "stopped"
    })
  }
  return { send, events, lines }
}
