import { type Api, Domain, type SessionId } from "@sam/bus"
import { Effect } from "effect"
import type { z } from "zod"
import { actOnSession } from "../Access.js"
import type { Principal } from "../Auth.js"
import * as Command from "../Command.js"
import { getSession } from "./SessionViews.js"

const C = Domain.ControlProtocol

/**
 * A follow-up prompt, shared by `POST /sessions/:id/prompt` and the NATS ingress. A failed or
 * stopped session refuses it (`invalid_state`, with the reason); the answer streams on the feed.
 */
export const prompt = Effect.fn("Sessions.prompt")(function* (
  principal: Principal,
  sessionId: SessionId,
  input: z.output<typeof Api.PromptRequest>
) {
  yield* actOnSession(principal, sessionId, "drive")
  const command = yield* Command.build(() => C.SessionPromptCommand.make({ sessionId, prompt: input.prompt }))
  const reply = yield* Command.ask(Domain.SessionRef, sessionId, command, Domain.Replies.SessionApplied)
  return { sessionId, promptEpoch: reply.promptEpoch ?? 0 }
})

/**
 * Cancel the current answer (ACP cancel, then the process group after a grace); the session stays.
 * With nothing in flight the session actor sends nothing and the answer is `idle`.
 */
export const cancel = Effect.fn("Sessions.cancel")(function* (principal: Principal, sessionId: SessionId) {
  yield* actOnSession(principal, sessionId, "end")
  const command = yield* Command.build(() => C.SessionCancelCommand.make({ sessionId }))
  const reply = yield* Command.ask(Domain.SessionRef, sessionId, command, Domain.Replies.SessionApplied)
  const status = reply.status === "idle" ? ("idle" as const) : ("cancelling" as const)
  return { sessionId, status, accepted: status === "cancelling" }
})

/** Stop a session: the agent is stopped on its node and the session takes no more prompts. */
export const stop = Effect.fn("Sessions.stop")(function* (principal: Principal, sessionId: SessionId) {
  yield* actOnSession(principal, sessionId, "end")
  const command = yield* Command.build(() =>
    C.SessionStopCommand.make({ sessionId, reason: `stopped by ${principal.userId}` })
  )
  yield* Command.ask(Domain.SessionRef, sessionId, command)
  return yield* getSession(principal, sessionId)
})
