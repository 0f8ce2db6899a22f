import { SqlClient } from "@effect/sql"
import { Domain, defineMessage, Subjects, WorkspaceId } from "@sam/bus"
import { Effect } from "effect"
import { z } from "zod"
import * as Actor from "../ActorKind.js"
import { dropped } from "./Audit.js"
import { TaskRef, WorkspaceRef } from "./Kinds.js"

const { ControlProtocol: C, NodeProtocol: N, workspaceTransition } = Domain

export const WorkspaceEvent = defineMessage(
  "workspace.status",
  z.object({
    workspaceId: z.string(),
    status: Domain.WorkspaceStatus,
    reason: z.string().optional(),
    via: z.string().optional()
  }),
  { durable: true }
)
export const WorkspaceBootLogEvent = defineMessage("workspace.bootlog", N.BootLog.body, { durable: true })

interface Row {
  readonly id: string
  readonly projectId: string
  readonly nodeId: string | null
  readonly taskId: string | null
  readonly status: Domain.WorkspaceStatus
  readonly runtime: "docker" | "host" | null
  readonly dispatchedAt: Date | null
  readonly dispatchCount: number
  readonly errorReason: string | null
  readonly repoUrl: string
  readonly branch: string | null
}
type State = Row | null

const event = (row: Row, body: z.input<typeof WorkspaceEvent.body>) =>
  Actor.event(row.projectId, "workspace", row.id, WorkspaceEvent.make(body))

/**
 * A workspace: handed to its node exactly once (`dispatched_at`, whichever of the task path and the
 * node-ready path comes first), then driven by the node's reports, which it checks come from the
 * node the ledger places it on.
 */
export const WorkspaceKind = Actor.make({
  ...WorkspaceRef,
  id: WorkspaceId,
  commands: C.workspaceCommands.defs,
  load: (id) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql<Row>`
        SELECT w.id, w.project_id, w.node_id, w.task_id, w.status, w.runtime, w.dispatched_at, w.dispatch_count,
          w.error_reason, COALESCE(w.repo_url, p.repo_url) AS repo_url, COALESCE(w.branch, p.default_branch) AS branch
        FROM workspaces w JOIN projects p ON p.id = w.project_id WHERE w.id = ${id} FOR UPDATE OF w`
      return (rows[0] ?? null) as State
    }),
  save: (id, state) =>
    Effect.gen(function* () {
      if (state === null) return
      const sql = yield* SqlClient.SqlClient
      yield* sql`
        UPDATE workspaces SET status = ${state.status}, runtime = ${state.runtime}, dispatched_at = ${state.dispatchedAt},
          dispatch_count = ${state.dispatchCount}, error_reason = ${state.errorReason}, updated_at = now(), version = version + 1
        WHERE id = ${id}`
    }),
  handle: (state, command) => {
    switch (command.type) {
      case "workspace.dispatch": {
        if (state === null || state.nodeId === null)
          return Effect.succeed({ state, reply: { ok: false, code: "not_found" } })
        // Dispatched already (by the other path, or a redelivery): nothing more to send.
        if (state.dispatchedAt !== null) return Effect.succeed({ state, reply: { ok: true, dispatched: false } })
        const next: Row = {
          ...state,
          status: "creating",
          dispatchedAt: new Date(),
          dispatchCount: state.dispatchCount + 1
        }
        const create = N.WorkspaceCreate.make(
          {
            workspaceId: state.id as never,
            projectId: state.projectId as never,
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
        if (report.type === "workspace.bootlog") {
          return Effect.succeed({
            state,
            events: [Actor.event(state.projectId, "workspace", state.id, WorkspaceBootLogEvent.make(report.body))]
          })
        }
        const to = report.body.status
        const transition = workspaceTransition(state.status, to)
        if (transition._tag !== "Allowed") return Effect.succeed({ state })
        const next: Row = {
          ...state,
          status: to,
          runtime: report.body.runtime ?? state.runtime,
          errorReason: to === "error" ? (report.body.reason ?? "the node reported an error") : state.errorReason
        }
        const toTask =
          state.taskId !== null && (to === "running" || to === "error")
            ? [
                Actor.to(
                  TaskRef,
                  state.taskId,
                  C.TaskWorkspaceStatus.make({
                    taskId: state.taskId as never,
                    workspaceId: state.id as never,
                    status: to,
                    ...(next.errorReason === null || to !== "error" ? {} : { reason: next.errorReason })
                  })
                )
              ]
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
    }
  }
})
