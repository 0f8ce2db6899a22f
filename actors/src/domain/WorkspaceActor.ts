import { SqlClient } from "@effect/sql"
import { Domain, SessionId, Subjects, WorkspaceId } from "@sam/bus"
import { Effect } from "effect"
import { z } from "zod"
import * as Actor from "../ActorKind.js"
import { dropped } from "./Audit.js"
import { NodeRef, SessionRef, TaskRef, WorkspaceRef } from "./Kinds.js"

const { ControlProtocol: C, NodeProtocol: N, workspaceTransition, TERMINAL_TASK_STATUSES } = Domain

export const { WorkspaceEvent, WorkspaceBootLogEvent } = Domain

/** The workspace's row as the actor keeps it: its repository and branch with the project's defaults. */
const Loaded = Domain.Rows.WorkspaceRow.extend({
  repoUrl: z.string(),
  dispatchCount: z.number(),
  /** its task's status, to cancel a task that has not ended when the workspace goes away */
  taskStatus: Domain.TaskStatus.nullable()
})
const decodeLoaded = Domain.Rows.decodeRows(Loaded, "workspace")
const decodeSessions = Domain.Rows.decodeRows(z.object({ id: SessionId, status: Domain.SessionStatus }), "session")

interface Row extends z.output<typeof Loaded> {
  /** sessions in it that are active or sleeping */
  readonly liveSessions: ReadonlyArray<SessionId>
  /** of those, the active ones (an agent may be working: the workspace is not idle) */
  readonly activeSessions: ReadonlyArray<SessionId>
  /** boot log lines this command adds (empty after every load) */
  readonly bootLog: ReadonlyArray<z.output<typeof N.BootLog.body>>
}
type State = Row | null

const refuse = (state: State, code: string, message: string) => ({ state, reply: { ok: false, code, message } })

const event = (row: Row, body: z.input<typeof WorkspaceEvent.body>) =>
  Actor.event(row.projectId, "workspace", row.id, WorkspaceEvent.make(body))

/**
 * A workspace: handed to its node exactly once (`dispatched_at`, whichever of the task path and the
 * node-ready path comes first), then driven by the node's reports, which it checks come from the
 * node the ledger places it on.
 */
/** The workspace's task (if it has one) hears that it is running or failed. */
const tellTask = (state: Row, status: "running" | "error", reason: string | undefined) =>
  state.taskId === null
    ? []
    : [
        Actor.to(
          TaskRef,
          state.taskId,
          C.TaskWorkspaceStatus.make({
            taskId: state.taskId,
            workspaceId: state.id,
            status,
            ...(reason === undefined ? {} : { reason })
          })
        )
      ]

const WorkspaceFlow = Actor.make({
  ...WorkspaceRef,
  id: WorkspaceId,
  commands: C.workspaceCommands.defs,
  load: (id) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql`
        SELECT w.id, w.project_id, w.node_id, w.task_id, w.status, w.runtime, w.dispatched_at, w.dispatch_count,
          w.error_reason, COALESCE(w.repo_url, p.repo_url) AS repo_url, COALESCE(w.branch, p.default_branch) AS branch,
          t.status AS task_status
        FROM workspaces w JOIN projects p ON p.id = w.project_id LEFT JOIN tasks t ON t.id = w.task_id
        WHERE w.id = ${id} FOR UPDATE OF w`.pipe(Effect.map(decodeLoaded))
      const row = rows[0]
      if (row === undefined) return null as State
      const sessions = yield* sql`
        SELECT id, status FROM sessions WHERE workspace_id = ${id} AND status IN ('active', 'sleeping') ORDER BY created_at`.pipe(
        Effect.map(decodeSessions)
      )
      const state: State = {
        ...row,
        liveSessions: sessions.map((s) => s.id),
        activeSessions: sessions.filter((s) => s.status === "active").map((s) => s.id),
        bootLog: []
      }
      return state
    }),
  save: (id, state) =>
    Effect.gen(function* () {
      if (state === null) return
      const sql = yield* SqlClient.SqlClient
      yield* sql`
        UPDATE workspaces SET status = ${state.status}, runtime = ${state.runtime}, dispatched_at = ${state.dispatchedAt},
          dispatch_count = ${state.dispatchCount}, error_reason = ${state.errorReason}, updated_at = now(), version = version + 1
        WHERE id = ${id}`
      if (state.bootLog.length > 0) {
        yield* sql`INSERT INTO workspace_boot_log ${sql.insert(
          state.bootLog.map((line) => ({
            workspace_id: id,
            step: line.step,
            status: line.status,
            message: line.message
          }))
        )}`
      }
    }),
  handle: (state, command) => {
    switch (command.type) {
      case "workspace.dispatch": {
        if (state === null || state.nodeId === null)
          return Effect.succeed({ state, reply: { ok: false, code: "not_found" } })
        // Dispatched already (by the other path, or a redelivery), or deleted before: nothing to send.
        if (state.dispatchedAt !== null || state.status !== "pending") {
          return Effect.succeed({ state, reply: { ok: true, dispatched: false } })
        }
        const next: Row = {
          ...state,
          status: "creating",
          dispatchedAt: new Date(),
          dispatchCount: state.dispatchCount + 1
        }
        const create = N.WorkspaceCreate.make(
          {
            workspaceId: state.id,
            projectId: state.projectId,
            repoUrl: state.repoUrl,
            ...(state.branch === null ? {} : { branch: state.branch })
          },
          { causationId: command.id }
        )
        return Effect.succeed({
          state: next,
          send: [{ subject: Subjects.nodeCommand(state.nodeId, create.type), envelope: create }],
          events: [event(next, { workspaceId: next.id, status: "creating", via: command.body.via })],
          reply: { ok: true, dispatched: true }
        })
      }
      case "workspace.report": {
        const { nodeId, report } = command.body
        if (state === null || state.nodeId !== nodeId) {
          return Effect.logWarning(
            `dropped ${report.type} from ${nodeId} for workspace ${command.body.report.body.workspaceId}`
          ).pipe(
            Effect.as({
              state,
              events: [
                dropped({
                  nodeId,
                  kind: "workspace",
                  entityId: report.body.workspaceId,
                  reportType: report.type,
                  reason: state === null ? "unknown workspace" : "workspace is not on this node"
                })
              ]
            })
          )
        }
        if (report.type === "workspace.bootlog-reported" || report.type === "workspace.bootlogs-reported") {
          const lines =
            report.type === "workspace.bootlog-reported"
              ? [report.body]
              : report.body.lines.map((line) => ({ workspaceId: state.id, ...line }))
          return Effect.succeed({
            state: { ...state, bootLog: [...state.bootLog, ...lines] },
            events: lines.map((line) =>
              Actor.event(state.projectId, "workspace", state.id, WorkspaceBootLogEvent.make(line))
            )
          })
        }
        const to = report.body.status
        // A delete sends the node `stop` then `delete`; if the stop was not reported, the delete still ends it
        // (`stopping` → `deleted` is a move of its own).
        if (workspaceTransition(state.status, to)._tag !== "Allowed") return Effect.succeed({ state })
        // A node says `creating` when it makes the workspace again (gone from it while it should run). Said of one
        // that ended (stopped, failed), it comes from a create delivered again after the end (a vm-agent restarted
        // meanwhile): the ledger keeps its word, and the reconciler stops whatever the node runs of it.
        if (to === "creating" && !REMADE_FROM.has(state.status)) return Effect.succeed({ state })
        const next: Row = {
          ...state,
          status: to,
          runtime: report.body.runtime ?? state.runtime,
          errorReason: to === "error" ? (report.body.reason ?? "the node reported an error") : state.errorReason
        }
        const toTask =
          to === "running" || to === "error"
            ? tellTask(state, to, to === "error" ? (next.errorReason ?? undefined) : undefined)
            : []
        return Effect.succeed({
          state: next,
          send: toTask,
          events: [
            event(next, {
              workspaceId: next.id,
              status: to,
              ...(next.errorReason && to === "error" ? { reason: next.errorReason } : {})
            })
          ]
        })
      }
      case "workspace.command-rejected":
        return Effect.succeed(rejected(state, command.body))
      case "workspace.user-stop":
        return Effect.succeed(stopOrDelete(state, "stop", command.body.reason, command.id))
      case "workspace.user-delete":
        return Effect.succeed(stopOrDelete(state, "delete", command.body.reason, command.id))
      case "workspace.task-ended":
        return Effect.succeed(taskEnded(state, command.body.taskId, command.id))
      case "workspace.idle-timeout":
        return Effect.succeed(idleTimeout(state, command.id))
      case "workspace.ended-expiry":
        return Effect.succeed(endedExpiry(state, command.id))
      case "workspace.missing":
        return Effect.succeed(missing(state, command.body, command.id))
    }
  }
})

/**
 * The node refused one of this workspace's commands (ADR 0019): a refused create leaves it `error`
 * with the node's reason, and its task fails at once; a refused stop of a workspace the node does not
 * have leaves it `stopped` (nothing of it runs there), any other refused stop or delete `error`. A
 * refusal that no longer matches the workspace's status (a repeat of a create that worked) changes
 * nothing.
 */
const rejected = (state: State, body: z.output<typeof C.WorkspaceCommandRejected.body>): Actor.Reaction<State> => {
  if (state === null || state.nodeId !== body.nodeId) {
    return {
      state,
      events: [
        dropped({
          nodeId: body.nodeId,
          kind: "workspace",
          entityId: body.workspaceId,
          reportType: "command.rejected",
          reason: state === null ? "unknown workspace" : "workspace is not on this node"
        })
      ]
    }
  }
  const reason = `the node refused ${body.commandType} (${body.code}): ${body.message}`.slice(0, 4096)
  const to: Domain.WorkspaceStatus | undefined =
    body.commandType === "workspace.create"
      ? state.status === "creating"
        ? "error"
        : undefined
      : body.commandType === "workspace.stop" && state.status === "stopping"
        ? body.code === "not_found"
          ? "stopped"
          : "error"
        : body.commandType === "workspace.delete" && workspaceTransition(state.status, "error")._tag === "Allowed"
          ? "error"
          : undefined
  // a delete of one that ended (its retention's, or a user's) refused by the node: tried again at the next expiry
  if (to === undefined)
    return body.commandType === "workspace.delete" && (state.status === "stopped" || state.status === "error")
      ? { state, timers: [endedTimer(state)] }
      : { state }
  const next: Row = { ...state, status: to, errorReason: to === "error" ? reason : state.errorReason }
  const toTask = to === "error" ? tellTask(state, "error", reason) : []
  return {
    state: next,
    send: toTask,
    events: [event(next, { workspaceId: next.id, status: to, reason, via: "node-rejected" })]
  }
}

/**
 * A stop or delete (a user's, or the idle reclaim's). The node is told (`workspace.stop`, then
 * `workspace.delete` for a delete) and reports the outcome; the workspace's active sessions (for a
 * delete also its sleeping ones) are stopped and its task, if it has not ended, is cancelled: nothing
 * is left showing as working in a workspace that is gone.
 */
const stopOrDelete = (
  state: State,
  kind: "stop" | "delete",
  reason: string | undefined,
  causationId: string
): Actor.Reaction<State> => {
  if (state === null) return refuse(state, "not_found", "no such workspace")
  if (state.status === "deleted") {
    return kind === "delete"
      ? { state, reply: { ok: true, duplicate: true, status: state.status } }
      : refuse(state, "invalid_transition", `workspace ${state.id} was deleted`)
  }
  const dispatched = state.dispatchedAt !== null && state.nodeId !== null
  if (kind === "stop" && !dispatched) {
    return refuse(state, "invalid_transition", `workspace ${state.id} was never started; delete it instead`)
  }
  if (kind === "stop" && (state.status === "stopping" || state.status === "stopped")) {
    return { state, reply: { ok: true, duplicate: true, status: state.status } }
  }
  const status: Domain.WorkspaceStatus = !dispatched
    ? "deleted"
    : workspaceTransition(state.status, "stopping")._tag === "Allowed"
      ? "stopping"
      : state.status
  const next: Row = { ...state, status }
  const meta = { causationId }
  const toNode =
    !dispatched || state.nodeId === null
      ? []
      : [
          ...(state.status === "stopped" ? [] : [N.WorkspaceStop.make({ workspaceId: state.id }, meta)]),
          ...(kind === "delete" ? [N.WorkspaceDelete.make({ workspaceId: state.id }, meta)] : [])
        ].map((command) => ({ subject: Subjects.nodeCommand(state.nodeId as string, command.type), envelope: command }))
  const why =
    `its workspace was ${kind === "stop" ? "stopped" : "deleted"}${reason === undefined ? "" : ` (${reason})`}`.slice(
      0,
      1000
    )
  const cascade = [
    ...endSessions(state, kind, why, meta),
    ...(state.taskId !== null && state.taskStatus !== null && !TERMINAL_TASK_STATUSES.has(state.taskStatus)
      ? [Actor.to(TaskRef, state.taskId, C.TaskCancel.make({ taskId: state.taskId, reason: why }, meta))]
      : [])
  ]
  return {
    state: next,
    send: [...toNode, ...cascade],
    events:
      status === state.status
        ? []
        : [event(next, { workspaceId: next.id, status, via: "user", ...(reason === undefined ? {} : { reason }) })],
    reply: { ok: true, status }
  }
}

/**
 * The sessions a stop or a delete ends: a stop keeps the workspace's files, so a sleeping session stays
 * asleep there (ADR 0023), and an active one whose task completed goes to sleep; a delete ends them all.
 */
const endSessions = (state: Row, kind: "stop" | "delete", why: string, meta: { readonly causationId: string }) =>
  (kind === "stop" ? state.activeSessions : state.liveSessions).map((sessionId) =>
    Actor.to(
      SessionRef,
      sessionId,
      C.SessionStopCommand.make(
        { sessionId, reason: why, from: "workspace", ...(kind === "stop" ? { keepsFiles: true } : {}) },
        meta
      )
    )
  )

/** How long a workspace whose task ended may sit idle before it is stopped; `SAM_WORKSPACE_IDLE_MS` (default 10 min). */
export const workspaceIdleMs = () => Number(process.env.SAM_WORKSPACE_IDLE_MS ?? 600_000)

const IDLE_TIMER = "idle"
const idleTimer = (state: Row) =>
  Actor.Timer.set(IDLE_TIMER, workspaceIdleMs(), C.WorkspaceIdleTimeout.make({ workspaceId: state.id }))

const HOLDING = Domain.STOPPABLE_WORKSPACE_STATUSES

/** Statuses in which the node should hold the workspace: a node that makes it again says so, and is followed. */
const REMADE_FROM: ReadonlySet<Domain.WorkspaceStatus> = new Set(["running", "recovery"])

/**
 * Its task ended (ADR 0023): a workspace never handed to its node is deleted now; one that runs waits
 * for its idle timeout; one already gone gives its slot back (again: releases are idempotent).
 */
const taskEnded = (state: State, taskId: string, causationId: string): Actor.Reaction<State> => {
  if (state === null || state.taskId !== taskId) return { state }
  if (state.status === "pending" && state.dispatchedAt === null)
    return stopOrDelete(state, "delete", "its task ended before the workspace was started", causationId)
  if (HOLDING.has(state.status)) return { state, timers: [idleTimer(state)] }
  if (GONE.has(state.status) && state.nodeId !== null)
    return {
      state,
      send: [Actor.to(NodeRef, state.nodeId, C.NodeRelease.make({ nodeId: state.nodeId, workspaceId: state.id }))]
    }
  return { state }
}

/** The idle timer fired: stop the workspace unless a session in it is active again; its files and branches stay. */
/**
 * How long a workspace that ended (stopped, failed) keeps what it holds on its node before it is deleted;
 * `SAM_WORKSPACE_ENDED_TTL_MS` (default 1 hour, ADR 0052).
 */
export const workspaceEndedTtlMs = () => {
  const configured = Number(process.env.SAM_WORKSPACE_ENDED_TTL_MS)
  return Number.isFinite(configured) && configured > 0 ? configured : 3_600_000
}
const ENDED_TIMER = "ended"
const endedTimer = (state: Row) =>
  Actor.Timer.set(ENDED_TIMER, workspaceEndedTtlMs(), C.WorkspaceEndedExpiry.make({ workspaceId: state.id }))

/**
 * Its ended-expiry came: the node of one still stopped or failed is told to delete it (a failed one to stop it
 * first), and its sleeping sessions end (ADR 0052). Its status stays until the node reports: a node that never
 * answers (gone without being destroyed) leaves it as it was, not `stopping` for ever.
 */
const endedExpiry = (state: State, causationId: string): Actor.Reaction<State> => {
  if (state === null || !(state.status === "stopped" || state.status === "error")) return { state }
  if (state.nodeId === null || state.dispatchedAt === null) return { state }
  const meta = { causationId }
  const minutes = Math.round(workspaceEndedTtlMs() / 60_000)
  const why = `its workspace is deleted, ${state.status} for ${minutes} min (ADR 0052)`
  const toNode = [
    ...(state.status === "error" ? [N.WorkspaceStop.make({ workspaceId: state.id }, meta)] : []),
    N.WorkspaceDelete.make({ workspaceId: state.id }, meta)
  ].map((command) => ({ subject: Subjects.nodeCommand(state.nodeId as string, command.type), envelope: command }))
  return { state, send: [...toNode, ...endSessions(state, "delete", why, meta)] }
}

const idleTimeout = (state: State, causationId: string): Actor.Reaction<State> => {
  if (state === null || !HOLDING.has(state.status)) return { state }
  const taskRunning = state.taskStatus !== null && !TERMINAL_TASK_STATUSES.has(state.taskStatus)
  if (state.activeSessions.length > 0 || taskRunning) return { state, timers: [idleTimer(state)] }
  return stopOrDelete(state, "stop", "idle since its task ended", causationId)
}

/**
 * The reconciler found that the node no longer has this workspace, which the ledger says runs there
 * (ADR 0023), or its node was deleted: it is `error` with the reason, and its task, if it still runs, fails.
 * One that was stopping, whose node never said it stopped, ends as what the node holds: `stopped`, or
 * `deleted` when nothing of it is left there; a stopped or failed one whose node is gone is `deleted`.
 */
const missing = (
  state: State,
  body: { readonly nodeId: string; readonly reason: string; readonly found?: "nothing" | "stopped" | undefined },
  causationId: string
): Actor.Reaction<State> => {
  if (state === null || state.nodeId !== body.nodeId) return { state }
  // A stop whose end the node never reported, or a stopped (or failed) workspace whose node is gone with its files.
  const kept = state.status === "stopped" || state.status === "error"
  if (state.status === "stopping" || (kept && body.found === "nothing")) {
    const to = body.found === "stopped" ? "stopped" : "deleted"
    const ended: Row = { ...state, status: to }
    return {
      state: ended,
      // as the stop or delete would have: nothing is left asleep in a workspace that is gone
      send: endSessions(state, to === "stopped" ? "stop" : "delete", `its workspace was ${to} (${body.reason})`, {
        causationId
      }),
      events: [event(ended, { workspaceId: ended.id, status: to, reason: body.reason, via: "reconciler" })]
    }
  }
  if (!HOLDING.has(state.status)) return { state }
  const next: Row = { ...state, status: "error", errorReason: body.reason }
  return {
    state: next,
    send: tellTask(state, "error", body.reason),
    events: [event(next, { workspaceId: next.id, status: "error", reason: body.reason, via: "reconciler" })]
  }
}

/** Statuses in which a workspace no longer holds a slot on its node (ADR 0022). */
const GONE: ReadonlySet<Domain.WorkspaceStatus> = new Set(["stopped", "deleted", "error"])

/** The workspace flow, and a workspace that stops, is deleted or fails gives its node slot back. */
export const WorkspaceKind = Actor.make({
  ...WorkspaceFlow.spec,
  handle: (state, command, context) =>
    Effect.map(WorkspaceFlow.spec.handle(state, command, context), (reaction) => {
      const next = reaction.state
      if (state === null || next === null || next.nodeId === null) return reaction
      // one that ended now is deleted when it has stayed so for the retention time (ADR 0052)
      const ended =
        (next.status === "stopped" || next.status === "error") && next.status !== state.status ? [endedTimer(next)] : []
      const withTimer = ended.length === 0 ? reaction : { ...reaction, timers: [...(reaction.timers ?? []), ...ended] }
      if (GONE.has(state.status) || !GONE.has(next.status)) return withTimer
      const release = Actor.to(NodeRef, next.nodeId, C.NodeRelease.make({ nodeId: next.nodeId, workspaceId: next.id }))
      return { ...withTimer, send: [...(withTimer.send ?? []), release] }
    })
})
