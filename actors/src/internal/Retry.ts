/**
 * What to do after a failed attempt at a command. A fenced commit gives the shard up; otherwise the
 * command is retried in place (keeping the entity's order: later messages wait behind it) with
 * exponential backoff, until `maxAttempts` deliveries in all, counting the server's redeliveries,
 * and then dead-lettered.
 */
export type AfterFailure =
  | { readonly _tag: "GiveUpShard" }
  | { readonly _tag: "DeadLetter" }
  | { readonly _tag: "Retry"; readonly delayMs: number }

export const MAX_BACKOFF_MS = 5_000

export const afterFailure = (input: {
  readonly fenced: boolean
  /** attempts in this process, from 1 */
  readonly attempt: number
  /** the server's delivery count of the message, from 1 */
  readonly deliveryCount: number
  readonly maxAttempts: number
  readonly retryBaseMs: number
}): AfterFailure => {
  if (input.fenced) return { _tag: "GiveUpShard" }
  if (totalAttempts(input.deliveryCount, input.attempt) >= input.maxAttempts) return { _tag: "DeadLetter" }
  return { _tag: "Retry", delayMs: Math.min(input.retryBaseMs * 2 ** (input.attempt - 1), MAX_BACKOFF_MS) }
}

/** Deliveries before this one (each failed or was lost) plus the attempts made here. */
export const totalAttempts = (deliveryCount: number, attempt: number) => deliveryCount - 1 + attempt
