import { z } from "zod"
import { ProjectId, SessionId, TaskId } from "../Ids.js"
import { ApiErrorBody } from "./ApiError.js"
import {
  Accepted,
  CancelAnswer,
  OptionAnswer,
  PermissionAnswered,
  PermissionParams,
  PromptAccepted,
  PromptRequest
} from "./Sessions.js"
import { CancelTaskRequest, CreateTaskRequest, Task } from "./Tasks.js"

/**
 * Programmatic clients over NATS (design §4, ADR 0011): request/reply on
 * `sam.in.<userId>.<tokenId>.<command>` with credentials minted from an API token
 * (`POST /api/v1/nats/credentials`). The request is a bare JSON object: the HTTP endpoint's body
 * with its path parameters as fields, parsed by the same schemas. The reply is an `IngressReply`;
 * its error codes are the HTTP API's (`forbidden`, `not_found`, `invalid_body`, `unauthenticated`…).
 */
export const IngressCommands = {
  /** `POST /projects/:projectId/tasks` */
  "task.create": {
    summary: "Submit a message to a project: it becomes a task that runs an agent",
    request: CreateTaskRequest.extend({ projectId: ProjectId }),
    result: Task
  },
  /** `POST /tasks/:taskId/cancel` */
  "task.cancel": {
    summary: "Cancel a task that has not ended",
    request: CancelTaskRequest.extend({ taskId: TaskId }),
    result: Task
  },
  /** `POST /sessions/:sessionId/prompt` */
  "session.prompt": {
    summary: "Send a follow-up prompt to a session",
    request: PromptRequest.extend({ sessionId: SessionId }),
    result: PromptAccepted
  },
  /** `POST /sessions/:sessionId/cancel` */
  "session.cancel": {
    summary: "Cancel the current answer; the session stays open for a follow-up",
    request: z.object({ sessionId: SessionId }),
    result: Accepted
  },
  /** `POST /sessions/:sessionId/permissions/:requestId`: `{sessionId, requestId, optionId}` or `{…, outcome: "cancelled"}` */
  "session.answer-permission": {
    summary: "Answer the agent's pending permission request",
    request: z.union([
      OptionAnswer.extend(PermissionParams.shape).strict(),
      CancelAnswer.extend(PermissionParams.shape).strict()
    ]),
    result: PermissionAnswered
  }
} as const

export type IngressCommand = keyof typeof IngressCommands
export const ingressCommandNames = Object.keys(IngressCommands) as ReadonlyArray<IngressCommand>
export const isIngressCommand = (name: string): name is IngressCommand => Object.hasOwn(IngressCommands, name)

export type IngressRequest<C extends IngressCommand> = z.input<(typeof IngressCommands)[C]["request"]>
export type IngressResult<C extends IngressCommand> = z.output<(typeof IngressCommands)[C]["result"]>

/** Every reply of the ingress: the command's result, or the error the HTTP API would have answered. */
/** `requestId`: the correlation id of everything the request caused (as the HTTP API's `X-Request-Id`). */
export const IngressReply = z.discriminatedUnion("ok", [
  z.object({ ok: z.literal(true), result: z.unknown(), requestId: z.string().optional() }),
  z.object({ ok: z.literal(false), error: ApiErrorBody, requestId: z.string().optional() })
])
export type IngressReply = z.infer<typeof IngressReply>
