import { z } from "zod"
import { SessionId } from "../Ids.js"
import { endpoint } from "./Endpoint.js"

export const PromptRequest = z.object({ prompt: z.string().min(1).max(200_000) })
export const PromptAccepted = z.object({ sessionId: SessionId, promptEpoch: z.number().int().nonnegative() })
export const Accepted = z.object({ sessionId: SessionId, accepted: z.literal(true) })

const SessionParams = z.object({ sessionId: SessionId })

export const SessionEndpoints = {
  promptSession: endpoint({
    method: "POST",
    path: "/sessions/:sessionId/prompt",
    summary: "Send a follow-up prompt to a session; its answer streams on the feed",
    tag: "sessions",
    params: SessionParams,
    body: PromptRequest,
    response: PromptAccepted,
    status: 202
  }),
  cancelSession: endpoint({
    method: "POST",
    path: "/sessions/:sessionId/cancel",
    summary: "Cancel the current answer; the session stays open for a follow-up",
    tag: "sessions",
    params: SessionParams,
    response: Accepted,
    status: 202
  })
}
