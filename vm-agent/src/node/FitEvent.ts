import { Domain } from "@sam/bus"

/** Room left under the report's limit for the event's own cut marks and its report's fields. */
const LIMIT = Domain.NodeProtocol.MAX_EVENT_BYTES - 4_096

/** Strings shorter than this are never cut: ids, kinds, statuses, titles. */
const SHORT = 256

/** Each try keeps less: the longest string, and the most items of a list. */
const LEVELS = [
  { chars: 65_536, items: 4_096 },
  { chars: 16_384, items: 1_024 },
  { chars: 4_096, items: 256 },
  { chars: SHORT, items: 16 }
] as const

const cut = (value: unknown, level: (typeof LEVELS)[number]): unknown => {
  if (typeof value === "string") {
    const keep = Math.max(level.chars, SHORT)
    return value.length > keep
      ? `${value.slice(0, keep)}… [${value.length - keep} characters cut: an event may carry at most 256 kB]`
      : value
  }
  if (Array.isArray(value)) return value.slice(0, level.items).map((item) => cut(item, level))
  if (value !== null && typeof value === "object")
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, cut(item, level)]))
  return value
}

/**
 * An event as it can be reported: one whose JSON is longer than a report may carry (a prompt of 200,000 quotes, a
 * tool's whole output) has its long strings cut, each with a note of how much, and its long lists shortened,
 * keeping its kind and every short field (ids, status). Sent as it was, it could not be reported at all, and the
 * events reported with it would be lost with it. `bytes`: the length of its JSON, which the report's run counts.
 */
export const fitEvent = <T extends object>(event: T): { readonly event: T; readonly bytes: number } => {
  let bytes = JSON.stringify(event).length
  if (bytes <= LIMIT) return { event, bytes }
  let fitted: unknown = event
  for (const level of LEVELS) {
    fitted = cut(event, level)
    bytes = JSON.stringify(fitted).length
    if (bytes <= LIMIT) break
  }
  return { event: fitted as T, bytes }
}
