import { z } from "zod"

/**
 * The state machines of design §6. Transition tables are data: actors consult `transition`, which
 * refuses an illegal move with the list of allowed targets, and the ledger's check constraints hold
 * the same status sets.
 */

export const TaskStatus = z.enum([
  "draft",
  "ready",
  "queued",
  "delegated",
  "in_progress",
  "completed",
  "failed",
  "cancelled"
])
export type TaskStatus = z.infer<typeof TaskStatus>

const taskTransitions: Record<TaskStatus, ReadonlyArray<TaskStatus>> = {
  draft: ["ready", "cancelled"],
  ready: ["queued", "delegated", "cancelled"],
  queued: ["delegated", "failed", "cancelled"],
  delegated: ["in_progress", "failed", "cancelled"],
  in_progress: ["completed", "failed", "cancelled"],
  completed: [],
  failed: ["ready", "cancelled"],
  cancelled: ["ready"]
}

export const TERMINAL_TASK_STATUSES: ReadonlySet<TaskStatus> = new Set(["completed", "failed", "cancelled"])

/** Ordered; a task's step never goes backwards but may skip. */
export const ExecutionStep = z.enum([
  "node_selection",
  "waiting_for_node_capacity",
  "node_provisioning",
  "node_agent_ready",
  "workspace_creation",
  "workspace_dispatch",
  "workspace_ready",
  "agent_session",
  "running",
  "awaiting_followup"
])
export type ExecutionStep = z.infer<typeof ExecutionStep>

export const WorkspaceStatus = z.enum([
  "pending",
  "creating",
  "running",
  "recovery",
  "sleeping",
  "stopping",
  "stopped",
  "deleted",
  "error"
])
export type WorkspaceStatus = z.infer<typeof WorkspaceStatus>

const workspaceTransitions: Record<WorkspaceStatus, ReadonlyArray<WorkspaceStatus>> = {
  pending: ["creating", "error", "deleted"],
  creating: ["running", "recovery", "error", "stopping"],
  running: ["sleeping", "stopping", "error", "creating"],
  recovery: ["stopping", "error", "creating"],
  sleeping: ["running", "stopping", "deleted"],
  // deleted: a delete's node reported it gone without saying it stopped first, or its node itself is gone
  stopping: ["stopped", "error", "deleted"],
  stopped: ["creating", "deleted"],
  deleted: [],
  error: ["creating", "stopping", "stopped", "deleted"]
}

/** Workspace statuses in which it was handed to its node and holds processes there: a stop applies. */
export const STOPPABLE_WORKSPACE_STATUSES: ReadonlySet<WorkspaceStatus> = new Set([
  "creating",
  "running",
  "recovery",
  "sleeping"
])

export const NodeStatus = z.enum(["provisioning", "running", "warm", "destroying", "deleted", "error"])
export type NodeStatus = z.infer<typeof NodeStatus>

const nodeTransitions: Record<NodeStatus, ReadonlyArray<NodeStatus>> = {
  provisioning: ["running", "error", "destroying"],
  running: ["warm", "destroying", "error"],
  warm: ["running", "destroying", "error"],
  destroying: ["deleted", "error"],
  deleted: [],
  error: ["destroying", "deleted"]
}

export const NodeHealth = z.enum(["healthy", "stale", "unhealthy"])
export type NodeHealth = z.infer<typeof NodeHealth>

export const SessionStatus = z.enum(["active", "sleeping", "stopped", "failed"])
export type SessionStatus = z.infer<typeof SessionStatus>

const sessionTransitions: Record<SessionStatus, ReadonlyArray<SessionStatus>> = {
  active: ["sleeping", "stopped", "failed"],
  sleeping: ["active", "stopped", "failed"],
  stopped: [],
  failed: []
}

export type Transition<S extends string> =
  | { readonly _tag: "Allowed"; readonly from: S; readonly to: S }
  /** the same status again: nothing to do, not an error (a redelivered command) */
  | { readonly _tag: "Unchanged"; readonly status: S }
  | {
      readonly _tag: "Refused"
      readonly from: S
      readonly to: S
      readonly allowed: ReadonlyArray<S>
      readonly message: string
    }

const machine =
  <S extends string>(name: string, table: Record<S, ReadonlyArray<S>>) =>
  (from: S, to: S): Transition<S> => {
    if (from === to) return { _tag: "Unchanged", status: from }
    const allowed = table[from]
    if (allowed.includes(to)) return { _tag: "Allowed", from, to }
    return {
      _tag: "Refused",
      from,
      to,
      allowed,
      message: `invalid ${name} transition ${from} → ${to}; allowed from ${from}: ${allowed.length > 0 ? allowed.join(", ") : "none"}`
    }
  }

export const taskTransition = machine("task", taskTransitions)
export const workspaceTransition = machine("workspace", workspaceTransitions)
export const nodeTransition = machine("node", nodeTransitions)
export const sessionTransition = machine("session", sessionTransitions)

/** The step to record: `next` if it is later than `current`, else `current` (never backwards). */
export const advanceStep = (current: ExecutionStep | null, next: ExecutionStep): ExecutionStep =>
  current === null || ExecutionStep.options.indexOf(next) > ExecutionStep.options.indexOf(current) ? next : current

/**
 * What a reader shows for a session: never active when its task is terminal, even if a transition
 * was missed (design §6).
 */
export const visibleSessionStatus = (session: SessionStatus, task: TaskStatus | null): SessionStatus =>
  session === "active" && task !== null && TERMINAL_TASK_STATUSES.has(task)
    ? task === "failed"
      ? "failed"
      : "stopped"
    : session
