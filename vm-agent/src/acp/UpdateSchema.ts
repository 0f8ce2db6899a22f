import type { SessionNotification } from "@agentclientprotocol/sdk"
import { zSessionNotification, zSessionUpdate } from "@agentclientprotocol/sdk/sam/zod"

/** The literal `sessionUpdate` of one of the SDK's kinds of update (`X.and(z.object({ sessionUpdate }))`). */
const kindOf = (option: (typeof zSessionUpdate.options)[number]): string | undefined => {
  const right = option.def.right as { readonly shape?: { readonly sessionUpdate?: { readonly value?: unknown } } }
  const value = right.shape?.sessionUpdate?.value
  return typeof value === "string" ? value : undefined
}

/**
 * The SDK's own schema of a `session/update` notification's params, one per kind of update. The SDK's is a union that
 * tries its kinds in turn, each an intersection parsed whole before its `sessionUpdate` is compared: a tool call's
 * update was parsed as four other kinds first, and a streamed chunk cost an agent's reader about as much to validate as
 * everything else it did with it (issue 12). Each kind has its own literal, so at most one of them accepts a message:
 * taking that one first accepts and returns what the union does. A kind the map does not hold goes to the union.
 */
const byKind = (() => {
  const counts = new Map<string, number>()
  for (const option of zSessionUpdate.options) {
    const kind = kindOf(option)
    if (kind !== undefined) counts.set(kind, (counts.get(kind) ?? 0) + 1)
  }
  return new Map(
    zSessionUpdate.options.flatMap((option) => {
      const kind = kindOf(option)
      return kind !== undefined && counts.get(kind) === 1
        ? [[kind, zSessionNotification.extend({ update: option })] as const]
        : []
    })
  )
})()

/**
 * A `session/update`'s params as ACP defines them (the SDK's schema), or the reason they are not. An agent is
 * untrusted: what it says is parsed before anything reads it.
 */
export const parseSessionNotification = (
  params: unknown
): { readonly ok: true; readonly value: SessionNotification } | { readonly ok: false; readonly reason: string } => {
  const update = typeof params === "object" && params !== null ? (params as { update?: unknown }).update : undefined
  const kind =
    typeof update === "object" && update !== null ? (update as { sessionUpdate?: unknown }).sessionUpdate : undefined
  const schema = (typeof kind === "string" ? byKind.get(kind) : undefined) ?? zSessionNotification
  const parsed = schema.safeParse(params)
  return parsed.success
    ? { ok: true, value: parsed.data as SessionNotification }
    : { ok: false, reason: parsed.error.issues[0]?.message ?? "invalid" }
}
