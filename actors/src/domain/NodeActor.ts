import { SqlClient } from "@effect/sql"
import { Domain, type Envelope, NodeId, TaskId, Trace, WorkspaceId } from "@sam/bus"
import { Effect, FiberRef } from "effect"
import { z } from "zod"
import * as Actor from "../ActorKind.js"
import { HEARTBEAT_FRESH_SECONDS, NodeRef, TaskRef, WorkspaceRef } from "./Kinds.js"
import { Reconciled, reconcile } from "./Reconciler.js"

const { ControlProtocol: C } = Domain

export const { NodeProvisionRequested, NodeStatusEvent, NodeStopRequested, NodeDestroyRequested } = Domain

/** Node caps (ADR 0022): nodes per user, nodes in the installation, workspaces a new node holds. */
export const nodeCaps = () => ({
  perUser: Number(process.env.SAM_MAX_NODES_PER_USER ?? 3),
  total: Number(process.env.SAM_MAX_NODES ?? 10),
  workspaces: Number(process.env.SAM_NODE_MAX_WORKSPACES ?? 4)
})

/**
 * Idle reclaim (ADR 0023): how long a node with no workspace slot taken waits before it joins its
 * owner's warm pool or is destroyed (`SAM_NODE_IDLE_MS`, default 10 min), and how many idle nodes each
 * user keeps warm for fast starts (`SAM_WARM_NODES`, default 1).
 */
export const nodeIdle = () => ({
  afterMs: Number(process.env.SAM_NODE_IDLE_MS ?? 600_000),
  warm: Number(process.env.SAM_WARM_NODES ?? 1)
})

const IDLE_TIMER = "idle"

/** A cloud node's machine when its profile names no size or location (sam-ui-agents §5): medium, nbg1, docker-ce. */
export const DEFAULT_MACHINE = { size: "medium", location: "nbg1", image: "docker-ce" } as const

/** Node statuses that count against the caps and can take work. */
const LIVE_NODE: ReadonlySet<Domain.NodeStatus> = new Set(["provisioning", "running", "warm"])

type Row = Domain.Rows.NodeRow
const { decodeRows } = Domain.Rows
const decodeNodes = decodeRows(Domain.Rows.NodeRow, "node")
const WorkspaceRef_ = z.object({ workspaceId: WorkspaceId })
const decodeWorkspaceRefs = decodeRows(WorkspaceRef_, "workspace")
const decodeReservations = decodeRows(
  WorkspaceRef_.extend({ taskEnded: z.boolean(), inUse: z.boolean() }),
  "reservation"
)
const decodeTaskIds = decodeRows(z.object({ id: TaskId }), "task")
const decodeUndispatched = decodeRows(
  z.object({ id: WorkspaceId, correlationId: z.string().nullable(), traceparent: z.string().nullable() }),
  "workspace"
)
const decodeWaiting = decodeRows(
  z.object({ id: TaskId, correlationId: z.string().nullable(), traceparent: z.string().nullable() }),
  "task"
)
const decodeWorkspaces = decodeRows(z.object({ id: WorkspaceId, status: Domain.WorkspaceStatus }), "workspace")
interface State {
  readonly row: Row | null
  /** workspaces placed on this node that were never handed to it */
  readonly undispatched: ReadonlyArray<WorkspaceId>
  /** tasks waiting for this node to be ready */
  readonly waiting: ReadonlyArray<TaskId>
  /** the correlation id of the request each waiting task or undispatched workspace was reserved for */
  readonly correlations?: ReadonlyMap<string, string>
  /** and its trace context (`traceparent`) */
  readonly traces?: ReadonlyMap<string, string>
  /** its workspaces that are not deleted, with their status */
  readonly workspaces: ReadonlyArray<{ readonly id: WorkspaceId; readonly status: Domain.WorkspaceStatus }>
  /** the workspaces holding its slots (`node_reservations`) */
  readonly reservations: ReadonlyArray<WorkspaceId>
  /**
   * workspaces whose task ended, waiting for their idle timeout (ADR 0023): this node's, and for a
   * `node.reserve` that would create a node, some of the owner's other nodes' (asked to stop early)
   */
  readonly idleReserved: ReadonlyArray<WorkspaceId>
  /** this node's slots held by a workspace whose task ended and that has no active session (ADR 0038) */
  readonly reclaimable: ReadonlyArray<WorkspaceId>
  /** the owner's tasks waiting for node capacity, oldest first */
  readonly capacityWaiters: ReadonlyArray<TaskId>
  /** for a `node.reserve` that would create the node: live nodes of its owner and of the installation */
  readonly fleet: { readonly own: number; readonly all: number; readonly roomy: boolean } | null
  /** for `node.idle-check`: the owner's other nodes kept warm */
  readonly warmPeers?: number
  /** for `node.heartbeat-seen` with an inventory: what the ledger says about what the node holds */
  readonly ledger?: Reconciled.Ledger
  /** what this command writes besides the row */
  readonly created?: true
  /** for a created cloud node: the machine asked for (ADR 0026) */
  readonly machine?: Domain.ControlProtocol.NodeMachine
  readonly reserved?: {
    readonly workspaceId: string
    readonly taskId: string
    readonly projectId: string
    /** the trace context of the reservation's handling (`ActorContext.traceparent`), kept with its correlation id */
    readonly traceparent: string | undefined
  }
  readonly released?: string
}

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
  load: (id, command) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql`
        SELECT id, owner_id, max_workspaces, status, provider, provider_request_id, agent_ready_at, last_heartbeat_at,
          capabilities
        FROM nodes WHERE id = ${id} FOR UPDATE`.pipe(Effect.map(decodeNodes))
      // Creating a node counts the installation's nodes: one creation at a time, under a transaction lock.
      const creating = rows.length === 0 && command.type === "node.reserve" && command.body.create
      if (creating) yield* sql`SELECT pg_advisory_xact_lock(hashtext('sam.node-fleet'))`
      const fleet = creating
        ? (yield* sql<{ own: number; all: number; roomy: boolean }>`
            SELECT count(*) FILTER (WHERE owner_id = ${command.body.ownerId})::int AS own, count(*)::int AS all,
              bool_or(owner_id = ${command.body.ownerId} AND provider = ${command.body.machine?.provider ?? "local"}
                AND (SELECT count(*) FROM node_reservations r WHERE r.node_id = nodes.id) < max_workspaces) IS TRUE AS roomy
            FROM nodes WHERE status IN ('provisioning', 'running', 'warm')`)[0]!
        : null
      // An unused join token holds its machine's place under the caps (ADR 0027): it becomes a node when used.
      const joining = creating
        ? (yield* sql<{ own: number; all: number }>`
            SELECT count(*) FILTER (WHERE owner_id = ${command.body.ownerId})::int AS own, count(*)::int AS all
            FROM node_boot_tokens WHERE purpose = 'join' AND used_at IS NULL AND expires_at > now()`)[0]!
        : null
      // At a node cap, the owner's workspaces whose task ended are asked to stop now, to free a slot.
      const ownerIdle = creating
        ? yield* sql`
            SELECT r.workspace_id FROM node_reservations r JOIN nodes n ON n.id = r.node_id
              JOIN tasks t ON t.id = r.task_id
            WHERE n.owner_id = ${command.body.ownerId} AND t.status IN ('completed', 'failed', 'cancelled')
            ORDER BY t.finished_at LIMIT 4`.pipe(Effect.map(decodeWorkspaceRefs))
        : []
      // Whether a slot's workspace has an active session: only a reservation hands slots over (ADR 0038), so
      // other commands (heartbeats among them) do not look, and count every slot as in use.
      const inUse =
        command.type === "node.reserve"
          ? sql`EXISTS (SELECT 1 FROM sessions s WHERE s.workspace_id = r.workspace_id AND s.status = 'active')`
          : sql`true`
      const reservations = yield* sql`
        SELECT r.workspace_id, COALESCE(t.status IN ('completed', 'failed', 'cancelled'), false) AS task_ended,
          ${inUse} AS in_use
        FROM node_reservations r LEFT JOIN tasks t ON t.id = r.task_id WHERE r.node_id = ${id} ORDER BY r.created_at`.pipe(
        Effect.map(decodeReservations)
      )
      const capacityWaiters =
        command.type === "node.release"
          ? yield* sql`
              SELECT t.id FROM tasks t JOIN nodes n ON n.owner_id = t.created_by AND n.id = ${id}
              WHERE t.status = 'queued' AND t.execution_step = 'waiting_for_node_capacity'
              ORDER BY t.created_at LIMIT 20`.pipe(Effect.map(decodeTaskIds))
          : []
      // with the request each was reserved for: what the node's readiness hands over follows it (issue 12)
      const undispatched = yield* sql`
        SELECT w.id, r.correlation_id, r.traceparent FROM workspaces w
        LEFT JOIN node_reservations r ON r.workspace_id = w.id AND r.node_id = w.node_id
        WHERE w.node_id = ${id} AND w.dispatched_at IS NULL AND w.status = 'pending'`.pipe(
        Effect.map(decodeUndispatched)
      )
      const waiting = yield* sql`
        SELECT t.id, r.correlation_id, r.traceparent
        FROM tasks t LEFT JOIN LATERAL (SELECT correlation_id, traceparent FROM node_reservations
            WHERE task_id = t.id AND node_id = t.node_id ORDER BY created_at DESC LIMIT 1) r ON true
        WHERE t.node_id = ${id} AND t.status = 'queued' AND t.execution_step = 'node_provisioning'`.pipe(
        Effect.map(decodeWaiting)
      )
      const workspaces = yield* sql`
        SELECT id, status FROM workspaces WHERE node_id = ${id} AND status <> 'deleted' ORDER BY created_at`.pipe(
        Effect.map(decodeWorkspaces)
      )
      const heartbeat = command.type === "node.heartbeat-seen" ? command.body : undefined
      const ledger =
        heartbeat?.inventory === undefined ? undefined : yield* Reconciled.load(id, heartbeat.inventory, heartbeat.at)
      // One warm-pool decision per owner at a time (a transaction lock): two nodes idle at once would
      // each count the other as not yet warm.
      if (command.type === "node.idle-check" && rows[0] !== undefined)
        yield* sql`SELECT pg_advisory_xact_lock(hashtext(${`sam.warm-pool.${rows[0].ownerId}`}))`
      const warmPeers =
        command.type === "node.idle-check" && rows[0] !== undefined
          ? (yield* sql<{ n: number }>`
              SELECT count(*)::int AS n FROM nodes
              WHERE owner_id = ${rows[0].ownerId} AND id <> ${id} AND status = 'warm'`)[0]!.n
          : undefined
      const state: State = {
        ...(ledger === undefined ? {} : { ledger }),
        ...(warmPeers === undefined ? {} : { warmPeers }),
        row: rows[0] ?? null,
        undispatched: undispatched.map((r) => r.id),
        waiting: waiting.map((r) => r.id),
        correlations: new Map(
          [...undispatched, ...waiting].flatMap((r) => (r.correlationId === null ? [] : [[r.id, r.correlationId]]))
        ),
        traces: new Map(
          [...undispatched, ...waiting].flatMap((r) => (r.traceparent === null ? [] : [[r.id, r.traceparent]]))
        ),
        workspaces,
        reservations: reservations.map((r) => r.workspaceId),
        idleReserved: [
          ...reservations.filter((r) => r.taskEnded).map((r) => r.workspaceId),
          ...ownerIdle.map((r) => r.workspaceId)
        ],
        reclaimable: reservations.filter((r) => r.taskEnded && !r.inUse).map((r) => r.workspaceId),
        capacityWaiters: capacityWaiters.map((r) => r.id),
        fleet:
          fleet === null || joining === null
            ? fleet
            : { ...fleet, own: fleet.own + joining.own, all: fleet.all + joining.all }
      }
      return state
    }),
  save: (id, state) =>
    Effect.gen(function* () {
      const row = state.row
      if (row === null) return
      const sql = yield* SqlClient.SqlClient
      if (state.created) {
        yield* sql`
          INSERT INTO nodes (id, provider, status, owner_id, max_workspaces)
          VALUES (${id}, ${row.provider}, ${row.status}, ${row.ownerId}, ${row.maxWorkspaces})`
        const m = state.machine
        if (m !== undefined && m.provider !== "local") {
          yield* sql`
            INSERT INTO node_machines (node_id, provider, size, size_explicit, location, image)
            VALUES (${id}, ${m.provider}, ${m.size ?? DEFAULT_MACHINE.size}, ${m.sizeExplicit},
              ${m.location ?? DEFAULT_MACHINE.location}, ${DEFAULT_MACHINE.image})`
        }
      }
      if (state.reserved !== undefined) {
        const r = state.reserved
        yield* sql`
          INSERT INTO workspaces (id, project_id, node_id, task_id, status)
          VALUES (${r.workspaceId}, ${r.projectId}, ${id}, ${r.taskId}, 'pending')`
        const correlationId = (yield* FiberRef.get(Trace.correlation)) ?? null
        yield* sql`
          INSERT INTO node_reservations (workspace_id, node_id, task_id, correlation_id, traceparent)
          VALUES (${r.workspaceId}, ${id}, ${r.taskId}, ${correlationId}, ${r.traceparent ?? null})`
      }
      if (state.released !== undefined) {
        yield* sql`DELETE FROM node_reservations WHERE workspace_id = ${state.released} AND node_id = ${id}`
      }
      yield* sql`
        UPDATE nodes SET status = ${row.status}, provider_request_id = ${row.providerRequestId},
          agent_ready_at = ${row.agentReadyAt}, last_heartbeat_at = ${row.lastHeartbeatAt},
          health = ${row.lastHeartbeatAt === null ? "stale" : "healthy"},
          capabilities = ${JSON.stringify(row.capabilities ?? {})}::jsonb, updated_at = now(), version = version + 1
        WHERE id = ${id}`
    }),
  handle: (state, command, context) => {
    if (command.type === "node.reserve") return Effect.succeed(reserve(state, command, context.traceparent))
    const row = state.row
    if (row === null) return Effect.succeed({ state, reply: { ok: false, code: "not_found" } })
    /** The request a waiting task or workspace was reserved for, as the meta of what hands it over. */
    const followed = (id: string) => {
      const correlationId = state.correlations?.get(id)
      return correlationId === undefined ? {} : { correlationId }
    }
    /** ...and in its trace. */
    const traced = (id: string, outgoing: Actor.Outgoing): Actor.Outgoing => {
      const traceparent = state.traces?.get(id)
      return traceparent === undefined ? outgoing : { ...outgoing, traceparent }
    }
    /** Once ready: the node-ready path of dispatch, and the tasks that waited. */
    const handOver = (next: Row) =>
      fresh(next) && next.status !== "destroying"
        ? [
            ...state.undispatched.map((workspaceId) =>
              traced(
                workspaceId,
                Actor.to(
                  WorkspaceRef,
                  workspaceId,
                  C.WorkspaceDispatch.make({ workspaceId: workspaceId, via: "node-ready" }, followed(workspaceId))
                )
              )
            ),
            ...state.waiting.map((taskId) =>
              traced(
                taskId,
                Actor.to(
                  TaskRef,
                  taskId,
                  C.TaskNodeAssigned.make({ taskId: taskId, nodeId: next.id }, followed(taskId))
                )
              )
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
          events: [systemEvent(next, NodeProvisionRequested.make({ nodeId: row.id, provider: row.provider }))]
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
        const inventory = command.body.inventory
        const found =
          inventory === undefined || state.ledger === undefined ? undefined : reconcile(row.id, inventory, state.ledger)
        return Effect.as(
          Effect.forEach(found?.lines ?? [], (line) => Effect.logWarning(line), { discard: true }),
          {
            state: { ...state, row: next },
            send: [...handOver(next), ...(found?.send ?? [])],
            events: found?.events ?? []
          }
        )
      }
      case "node.idle-check":
        return Effect.succeed(idleCheck(state, row))
      case "node.destroyed": {
        if (row.status !== "destroying") return Effect.succeed({ state })
        const next: Row = { ...row, status: "deleted" }
        // What the node never reported ended (it was down, or slower than the revoker's grace) went with it: a
        // workspace left there, running, stopping or stopped with its files, is not on any machine any more.
        const left = state.workspaces
        return Effect.succeed({
          state: { ...state, row: next },
          events: [systemEvent(next, NodeStatusEvent.make({ nodeId: row.id, status: "deleted", ready: false }))],
          send: left.map((w) =>
            Actor.to(
              WorkspaceRef,
              w.id,
              C.WorkspaceMissing.make({
                workspaceId: w.id,
                nodeId: row.id,
                reason: `its node ${row.id} was deleted`,
                found: "nothing"
              })
            )
          )
        })
      }
      case "node.stop": {
        const reason = command.body.reason
        const stopping = state.workspaces
          .filter((w) => Domain.STOPPABLE_WORKSPACE_STATUSES.has(w.status))
          .map((w) => w.id)
        return Effect.succeed({
          state,
          send: stopping.map((workspaceId) =>
            Actor.to(
              WorkspaceRef,
              workspaceId,
              C.WorkspaceStopCommand.make({
                workspaceId: workspaceId,
                reason: reason ?? "its node was stopped"
              })
            )
          ),
          events: [
            systemEvent(
              row,
              NodeStopRequested.make({
                nodeId: row.id,
                workspaces: stopping,
                ...(reason === undefined ? {} : { reason })
              })
            )
          ],
          reply: { ok: true, workspaces: stopping }
        })
      }
      case "node.release": {
        const workspaceId = command.body.workspaceId
        if (!state.reservations.includes(workspaceId)) return Effect.succeed({ state })
        const free = row.maxWorkspaces - (state.reservations.length - 1)
        const left = state.reservations.filter((w) => w !== workspaceId)
        // Wake the owner's oldest waiting tasks, as many as there are free slots; the rest retry on their timers.
        const woken = state.capacityWaiters.slice(0, Math.max(0, free))
        // The last slot given back: the node is idle from now (ADR 0023). A woken task that takes a slot
        // here cancels the check; one that goes elsewhere leaves it to fire.
        const idle = left.length === 0 && LIVE_NODE.has(row.status)
        return Effect.succeed({
          state: { ...state, reservations: left, released: workspaceId },
          send: woken.map((taskId) =>
            Actor.to(TaskRef, taskId, C.TaskPlace.make({ taskId: taskId, attempt: 0, via: "released" }))
          ),
          timers: idle
            ? [Actor.Timer.set(IDLE_TIMER, nodeIdle().afterMs, C.NodeIdleCheck.make({ nodeId: row.id }))]
            : []
        })
      }
      case "node.destroy":
        return Effect.succeed(destroy(state, row, command.body.reason))
    }
  }
})

/**
 * Retire the node: it takes no new work (`destroying`), its workspaces are deleted, and
 * `node.destroy-requested` asks its provider to destroy the machine once they are (NodeRevoker.ts).
 */
const destroy = (state: State, row: Row, reason: string | undefined): Actor.Reaction<State> => {
  const transition = Domain.nodeTransition(row.status, "destroying")
  if (transition._tag === "Unchanged") return { state, reply: { ok: true, duplicate: true, workspaces: [] } }
  if (transition._tag === "Refused")
    return { state, reply: { ok: false, code: "invalid_transition", message: transition.message } }
  const next: Row = { ...row, status: "destroying" }
  const deleting = state.workspaces.map((w) => w.id)
  return {
    state: { ...state, row: next },
    send: deleting.map((workspaceId) =>
      Actor.to(
        WorkspaceRef,
        workspaceId,
        C.WorkspaceDeleteCommand.make({ workspaceId: workspaceId, reason: reason ?? "its node was deleted" })
      )
    ),
    events: [
      systemEvent(next, NodeStatusEvent.make({ nodeId: row.id, status: next.status, ready: false })),
      systemEvent(
        next,
        NodeDestroyRequested.make({
          nodeId: row.id,
          provider: row.provider,
          workspaces: deleting,
          ...(reason === undefined ? {} : { reason })
        })
      )
    ],
    reply: { ok: true, workspaces: deleting },
    timers: [Actor.Timer.cancel(IDLE_TIMER)]
  }
}

/**
 * The idle timer fired (ADR 0023): a node that still holds no slot joins its owner's warm pool while
 * that has room, else it is destroyed. A node that took work meanwhile is left alone.
 */
const idleCheck = (state: State, row: Row): Actor.Reaction<State> => {
  if (state.reservations.length > 0 || !LIVE_NODE.has(row.status) || row.status === "warm") return { state }
  // A machine its owner joined costs SAM nothing idle and is not SAM's to retire (ADR 0027).
  if (row.provider === "joined") return { state }
  const { afterMs, warm } = nodeIdle()
  if (row.status === "provisioning")
    return destroy(state, row, `it never became ready and no task waits for it (${Math.round(afterMs / 1000)} s)`)
  if ((state.warmPeers ?? 0) < warm) {
    const next: Row = { ...row, status: "warm" }
    return {
      state: { ...state, row: next },
      events: [systemEvent(next, NodeStatusEvent.make({ nodeId: row.id, status: "warm", ready: fresh(next) }))]
    }
  }
  return destroy(
    state,
    row,
    `idle for ${Math.round(afterMs / 1000)} s and its owner's warm pool is full (${warm} node${warm === 1 ? "" : "s"})`
  )
}

/**
 * A slot for a task's workspace, one message at a time (ADR 0022): granted while the node is live, the
 * task's submitter's and below `max_workspaces`; a node that does not exist is created for its owner
 * and provisioned while the owner's and the installation's node caps allow. The workspace is
 * inserted `pending` on the node with its reservation.
 */
const reserve = (
  state: State,
  command: Envelope & { readonly body: z.output<typeof C.NodeReserve.body> },
  traceparent: string | undefined
): Actor.Reaction<State> => {
  const b = command.body
  const full = (reason: string, elsewhere = false): Actor.Reaction<State> => ({
    state,
    send: [
      Actor.to(
        TaskRef,
        b.taskId,
        C.TaskNodeFull.make({
          taskId: b.taskId,
          nodeId: b.nodeId,
          workspaceId: b.workspaceId,
          reason,
          attempt: b.attempt,
          elsewhere
        })
      )
    ]
  })
  const grant = (next: State, row: Row): Actor.Reaction<State> => ({
    state: next,
    send: [
      Actor.to(
        TaskRef,
        b.taskId,
        C.TaskNodeReserved.make({
          taskId: b.taskId,
          nodeId: b.nodeId,
          workspaceId: b.workspaceId,
          ready: fresh(row) && row.status !== "destroying"
        })
      )
    ]
  })
  // Workspaces whose task ended are asked to stop now rather than at their idle timeout: the slot they
  // give back wakes the waiting task (`node.release` wakes the owner's waiting tasks).
  const freeIdle = (reaction: Actor.Reaction<State>): Actor.Reaction<State> => ({
    ...reaction,
    send: [
      ...(reaction.send ?? []),
      ...[...new Set(state.idleReserved)].map((workspaceId) =>
        Actor.to(WorkspaceRef, workspaceId, C.WorkspaceIdleTimeout.make({ workspaceId: workspaceId }))
      )
    ]
  })
  const slot = { workspaceId: b.workspaceId, taskId: b.taskId, projectId: b.projectId, traceparent }
  const row = state.row
  if (row === null) {
    if (!b.create || state.fleet === null) return full(`node ${b.nodeId} does not exist`)
    // A node created by another task of the owner's a moment ago has room: no new node.
    if (state.fleet.roomy) return full("another of the user's nodes has room", true)
    const caps = nodeCaps()
    if (state.fleet.own >= caps.perUser) return freeIdle(full(`the user's node cap is reached (${caps.perUser} nodes)`))
    if (state.fleet.all >= caps.total)
      return freeIdle(full(`the installation's node cap is reached (${caps.total} nodes)`))
    const created: Row = {
      id: b.nodeId,
      ownerId: b.ownerId,
      maxWorkspaces: caps.workspaces,
      status: "provisioning",
      provider: b.machine?.provider ?? "local",
      providerRequestId: command.id,
      agentReadyAt: null,
      lastHeartbeatAt: null,
      capabilities: {}
    }
    const next: State = {
      ...state,
      row: created,
      created: true,
      reserved: slot,
      reservations: [b.workspaceId],
      ...(b.machine === undefined ? {} : { machine: b.machine })
    }
    const reaction = grant(next, created)
    return {
      ...reaction,
      events: [systemEvent(created, NodeProvisionRequested.make({ nodeId: b.nodeId, provider: created.provider }))]
    }
  }
  if (state.reservations.includes(b.workspaceId)) return grant(state, row)
  if (row.ownerId !== b.ownerId) return full(`node ${row.id} is not the submitter's`)
  if (!LIVE_NODE.has(row.status)) return full(`node ${row.id} is ${row.status}`)
  if (state.reservations.length >= row.maxWorkspaces) {
    // A ready node full of idle work hands the oldest idle workspace's slot to this task at once and stops
    // that workspace: the task does not wait for the stop to be reported (ADR 0038).
    const handedOver = fresh(row) ? state.reservations.find((w) => state.reclaimable.includes(w)) : undefined
    if (handedOver !== undefined) {
      const granted = grant(
        {
          ...state,
          reserved: slot,
          released: handedOver,
          reservations: [...state.reservations.filter((w) => w !== handedOver), b.workspaceId]
        },
        row
      )
      return {
        ...granted,
        send: [
          ...(granted.send ?? []),
          Actor.to(WorkspaceRef, handedOver, C.WorkspaceIdleTimeout.make({ workspaceId: handedOver }))
        ]
      }
    }
    const idle = state.reservations.filter((w) => state.idleReserved.includes(w)).length
    return freeIdle(
      full(
        `node ${row.id} is full (${state.reservations.length} of ${row.maxWorkspaces} workspaces)${idle > 0 ? `; stopping ${idle} whose task ended` : ""}`
      )
    )
  }
  // A warm (or idle) node takes work again: it is running, and no longer idle.
  const taken: Row = row.status === "warm" ? { ...row, status: "running" } : row
  const reaction = grant(
    { ...state, row: taken, reserved: slot, reservations: [...state.reservations, b.workspaceId] },
    taken
  )
  return {
    ...reaction,
    timers: [Actor.Timer.cancel(IDLE_TIMER)],
    events:
      taken === row
        ? []
        : [systemEvent(taken, NodeStatusEvent.make({ nodeId: row.id, status: "running", ready: fresh(taken) }))]
  }
}
