import { Api } from "@sam/bus"
import { Data } from "effect"
import type { z } from "zod"

/** A request the gateway refuses, with the HTTP status its code maps to (`Api.errorStatus`). */
export class ApiError extends Data.TaggedError("ApiError")<{
  readonly code: Api.ErrorCode
  readonly message: string
  readonly details?: unknown
  /** seconds, sent as `Retry-After` (with `rate_limited`) */
  readonly retryAfter?: number
}> {
  get status(): number {
    return Api.errorStatus[this.code]
  }
  get body(): Api.ApiErrorBody {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details }
  }
}

export const notFound = (what: string, id: string) => new ApiError({ code: "not_found", message: `no ${what} ${id}` })
export const forbidden = (message: string) => new ApiError({ code: "forbidden", message })
export const conflict = (message: string, details?: unknown) =>
  new ApiError({ code: "conflict", message, ...(details === undefined ? {} : { details }) })
export const invalidState = (message: string, details?: unknown) =>
  new ApiError({ code: "invalid_state", message, ...(details === undefined ? {} : { details }) })

/** zod issues as `details`: where and what, never the rejected value (it may be a secret). */
export const issues = (error: z.ZodError) =>
  error.issues.map((issue) => ({ path: issue.path.map(String).join("."), message: issue.message }))
