import { z } from "zod"

/**
 * The body of every failed HTTP response and of a WebSocket `error` frame. `code` is stable and
 * machine-readable (`not_found`, `forbidden`, `invalid_body`…); `message` is for people; `details`
 * carries what helps fix the request (the zod issues of a bad body, the allowed transitions…).
 */
export const ApiErrorBody = z.object({
  code: z.string(),
  message: z.string(),
  details: z.unknown().optional()
})
export type ApiErrorBody = z.infer<typeof ApiErrorBody>

/** The codes the gateway uses, with their HTTP status. */
export const errorStatus = {
  invalid_json: 400,
  invalid_body: 400,
  invalid_params: 400,
  invalid_query: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  invalid_state: 409,
  rate_limited: 429,
  internal: 500,
  unavailable: 503
} as const
export type ErrorCode = keyof typeof errorStatus
