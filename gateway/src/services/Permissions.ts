import { type Api, Domain, type SessionId } from "@sam/bus"
import { Effect } from "effect"
import type { z } from "zod"
import { actOnSession } from "../Access.js"
import { ApiError } from "../ApiError.js"
import type { Principal } from "../Auth.js"
import * as Command from "../Command.js"

const C = Domain.ControlProtocol

/**
 * Answer the agent's pending permission request (ADR 0018), shared by
 * `POST /sessions/:sessionId/permissions/:requestId` and the NATS ingress. Any member of the
 * session's project may answer. A request that no longer waits (answered, timed out, its turn over,
 * or never asked) is `invalid_state`; an option the request does not offer is `invalid_body`.
 */
export const answer = Effect.fn("Permissions.answer")(function* (
  principal: Principal,
  sessionId: SessionId,
  requestId: string,
  input: z.output<typeof Api.AnswerPermissionRequest>
) {
  yield* actOnSession(principal, sessionId, "drive")
  const optionId = "optionId" in input ? input.optionId : "cancelled"
  const command = yield* Command.build(() =>
    C.SessionAnswerPermission.make({ sessionId, requestId, optionId, by: principal.userId })
  )
  const reply = yield* Command.ask(Domain.SessionRef, sessionId, command, Domain.Replies.SessionApplied).pipe(
    Effect.catchIf(
      (error) => (error.details as { reason?: string } | undefined)?.reason === "unknown_option",
      (error) => Effect.fail(new ApiError({ code: "invalid_body", message: error.message }))
    )
  )
  return { sessionId, requestId, outcome: reply.outcome ?? optionId }
})
