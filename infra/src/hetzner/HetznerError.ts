import { Data } from "effect"

/**
 * What a Hetzner error means for the caller (sam-protocols §6.1): capacity is retried with backoff,
 * placement (412) walks the locations, quota and configuration fail at once, auth says the token is bad,
 * a rate limit waits for the next request the headers allow.
 */
export type Category =
  | "transient_capacity"
  | "placement"
  | "quota_exceeded"
  | "invalid_config"
  | "auth_error"
  | "rate_limited"
  | "not_found"
  | "unknown"

/** An error answer of the API: its HTTP status and Hetzner's `{ error: { code, message, details } }`. */
export class HetznerApiError extends Data.TaggedError("HetznerApiError")<{
  readonly status: number
  readonly code: string
  readonly message: string
  readonly details?: unknown
  readonly category: Category
  /** `RateLimit-*` headers of the answer, when it had them */
  readonly rateLimit?: RateLimit
}> {}

/** No answer: the request may or may not have reached Hetzner (a timeout, a reset connection). */
export class HetznerTransportError extends Data.TaggedError("HetznerTransportError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** An answer whose body is not what the API documents. */
export class HetznerDecodeError extends Data.TaggedError("HetznerDecodeError")<{
  readonly status: number
  readonly message: string
}> {}

export type HetznerError = HetznerApiError | HetznerTransportError | HetznerDecodeError

export interface RateLimit {
  readonly limit: number
  readonly remaining: number
  /** UNIX seconds when the budget is full again */
  readonly reset: number
}

const UNSUPPORTED_LOCATION = /^(?:hetzner API error \(422\): )?unsupported location for server type$/i
const CAPACITY_MESSAGES = [
  /unavailable/i,
  /currently not available/i,
  /no capacity/i,
  /not enough resources/i,
  /resource[s]?\s+(?:temporarily\s+)?unavailable/i,
  /could not (?:find|allocate)/i,
  UNSUPPORTED_LOCATION
]

/** sam-protocols §6.1, first match wins; 412 is placement and never capacity. */
export const classify = (status: number, code: string, message: string): Category => {
  if (status === 422 && code === "invalid_input" && UNSUPPORTED_LOCATION.test(message)) return "transient_capacity"
  if (status === 412 || code === "placement_error") return "placement"
  switch (code) {
    case "resource_unavailable":
      return "transient_capacity"
    case "server_limit_exceeded":
    case "limit_exceeded":
      return "quota_exceeded"
    case "uniqueness_error":
    case "invalid_input":
    case "conflict":
      return "invalid_config"
    case "forbidden":
    case "unauthorized":
      return "auth_error"
    case "rate_limit_exceeded":
      return "rate_limited"
    case "not_found":
      return "not_found"
  }
  if (status === 401 || status === 403) return "auth_error"
  if (status === 429) return "rate_limited"
  if (status === 404) return "not_found"
  if (status === 422 && CAPACITY_MESSAGES.some((re) => re.test(message))) return "transient_capacity"
  return "unknown"
}

export const isCapacity = (e: unknown): e is HetznerApiError =>
  e instanceof HetznerApiError && e.category === "transient_capacity"

/** Capacity retries ran out for one server type in one location (or its 300 s budget did). */
export class CapacityExhausted extends Data.TaggedError("CapacityExhausted")<{
  readonly message: string
  readonly attempts: number
  readonly serverType: string
  readonly location: string
  readonly cause: HetznerApiError
}> {}

/** No machine of the size asked for, after the retries (and, for a default size, after the smaller ones). */
export class NoMachinesAvailable extends Data.TaggedError("NoMachinesAvailable")<{
  readonly message: string
  readonly tried: ReadonlyArray<string>
  readonly cause: CapacityExhausted
}> {}
