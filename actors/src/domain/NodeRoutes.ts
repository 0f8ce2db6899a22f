import { Domain, type MessageId, type NodeId } from "@sam/bus"
import { Effect } from "effect"
import type { z } from "zod"
import * as Actors from "../Client.js"
import { NodeRef, TaskRef, WorkspaceRef } from "./Kinds.js"
import { forward, type ReportRoutes } from "./ReportIngress.js"

const { ControlProtocol: C } = Domain

/** A workspace's report, with the node that sent it, to the workspace it names. */
const toWorkspace = (reportId: MessageId, nodeId: NodeId, report: z.input<typeof C.WorkspaceReport.body>["report"]) =>
  forward(WorkspaceRef, report.body.workspaceId, C.WorkspaceReport.make({ nodeId, report }, { id: reportId }))

/**
 * How the ingress hands node, workspace and task reports to their actors, with the node taken from
 * the subject. The report's envelope id becomes the command's id: a redelivered report is one command.
 */
export const nodeReportRoutes: ReportRoutes = {
  "node.ready": (report, source) =>
    forward(
      NodeRef,
      source.nodeId,
      C.NodeReadyReported.make({ nodeId: source.nodeId, ready: report.body }, { id: report.id })
    ),
  "workspace.status-reported": (report, source) =>
    toWorkspace(report.id, source.nodeId, { type: report.type, body: report.body }),
  "workspace.bootlog-reported": (report, source) =>
    toWorkspace(report.id, source.nodeId, { type: report.type, body: report.body }),
  "workspace.bootlogs-reported": (report, source) =>
    toWorkspace(report.id, source.nodeId, { type: report.type, body: report.body }),
  "task.result": (report, source) =>
    forward(
      TaskRef,
      report.body.taskId,
      C.TaskResultReported.make({ nodeId: source.nodeId, result: report.body }, { id: report.id })
    )
}

/** Heartbeats become at most one `node.heartbeat-seen` per node every `everyMs`. */
export const makeHeartbeatThrottle = (everyMs = 5_000) => {
  const last = new Map<string, number>()
  return (record: Domain.NodeHealthRecord) => {
    const now = Date.now()
    if ((last.get(record.nodeId) ?? 0) + everyMs > now) return Effect.void
    last.set(record.nodeId, now)
    return Actors.send(
      NodeRef,
      record.nodeId,
      C.NodeHeartbeatSeen.make({
        nodeId: record.nodeId,
        at: new Date(now).toISOString(),
        ...(record.workspaces === undefined || record.agentSessions === undefined
          ? {}
          : {
              inventory: {
                workspaces: record.workspaces,
                agentSessions: record.agentSessions,
                ...(record.workspacesTruncated === true ? { truncated: true } : {})
              }
            })
      })
    ).pipe(
      Effect.asVoid,
      // each heartbeat's command a trace of its own, not part of the long-lived subscription's
      Effect.withSpan("Ingress.heartbeat", {
        root: true,
        captureStackTrace: false,
        attributes: { nodeId: record.nodeId }
      })
    )
  }
}
