import { SqlClient } from "@effect/sql"
import { Consume, Domain, Subjects } from "@sam/bus"
import { Effect } from "effect"
import type { AnyActorKind } from "../ActorKind.js"
import { WorkspaceRef } from "./Kinds.js"
import { commandMeta, drop, forward, type ReportHandler, type ReportRoutes } from "./ReportIngress.js"

const { ControlProtocol: C, NodeProtocol: N } = Domain

/**
 * A node's `command.rejected` goes home (ADR 0019): the report names the refused message's id, and
 * the outbox keeps every command the control plane sent, with its subject. The rejection is routed
 * only when that message was sent to this very node (so a node can refuse only what it was asked
 * to do), to the actor of the entity the command named: workspace commands to the workspace actor,
 * session commands to the session actor, which settle their state with the node's reason. A
 * rejection naming no message or one the outbox does not know is audited in `dropped_reports`.
 */
export const rejectionRoutes = (session: Pick<AnyActorKind, "name" | "shards">): ReportRoutes => {
  const handler: ReportHandler<"command.rejected"> = (report, source) =>
    Effect.gen(function* () {
      const body = report.body
      if (body.messageId === undefined) {
        // A payload the node could not even decode: no command of ours to settle.
        yield* Effect.logWarning(`node ${source.nodeId} rejected an undecodable message: ${body.message}`)
        return Consume.Outcome.Ack()
      }
      const sql = yield* SqlClient.SqlClient
      const [sent] = yield* sql<{ subject: string; payload: string }>`
        SELECT subject, payload FROM actor_outbox WHERE message_id = ${body.messageId}`
      const decoded = sent === undefined ? undefined : N.nodeCommands.decode(new TextEncoder().encode(sent.payload))
      if (sent === undefined || decoded?._tag !== "Ok") {
        return yield* drop(source, report, null, "rejected_unknown_command")
      }
      const command = decoded.envelope
      if (sent.subject !== Subjects.nodeCommand(source.nodeId, command.type)) {
        return yield* drop(source, report, null, "rejected_another_nodes_command")
      }
      const rejection = { nodeId: source.nodeId, messageId: body.messageId, code: body.code, message: body.message }
      const meta = commandMeta(report)
      switch (command.type) {
        case "workspace.create":
        case "workspace.stop":
        case "workspace.delete": {
          const { workspaceId } = command.body
          return yield* forward(
            WorkspaceRef,
            workspaceId,
            C.WorkspaceCommandRejected.make({ workspaceId, commandType: command.type, ...rejection }, meta)
          )
        }
        case "session.start":
        case "session.prompt":
        case "session.cancel":
        case "session.stop":
        case "session.permission-answer": {
          const { sessionId } = command.body
          const promptEpoch =
            command.type === "session.prompt"
              ? command.body.promptEpoch
              : command.type === "session.start"
                ? 1
                : undefined
          return yield* forward(
            session,
            sessionId,
            C.SessionCommandRejected.make(
              {
                sessionId,
                commandType: command.type,
                ...(promptEpoch === undefined ? {} : { promptEpoch }),
                ...(command.type === "session.permission-answer" ? { requestId: command.body.requestId } : {}),
                ...rejection
              },
              meta
            )
          )
        }
        default:
          return Consume.Outcome.Ack()
      }
    })
  return { "command.rejected": handler }
}
