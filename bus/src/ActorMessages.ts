import { z } from "zod"
import { defineMessage } from "./Envelope.js"

/**
 * Messages of the actor runtime itself, shared by every actor kind.
 *
 * - `actor.timer-fired`: a command an actor may register to receive the timers it set; the runtime
 *   publishes the stored command of a due timer, so a kind that wants a generic tick uses this one.
 * - `actor.dead-lettered`: an event published (via the outbox) when a command was moved to the
 *   dead-letter table, because it did not decode or its handler failed too many times. Subject:
 *   `sam.evt.system.<kind>.<id>.actor.dead-lettered`.
 * - `actor.reply`: the volatile answer to an `ask`, sent on core NATS to the asker's reply subject
 *   after the command's transaction committed (or was found to be a duplicate, or dead-lettered).
 */
export const TimerFired = defineMessage(
  "actor.timer-fired",
  z.object({ name: z.string().min(1).max(128), data: z.unknown().optional() }),
  { durable: true }
)

export const DeadLetterReason = z.enum([
  "not-json",
  "bad-envelope",
  "unknown-type",
  "bad-body",
  "bad-id",
  /** on a shard other than `shardOf(id, shards)` of its entity: the sender's shard count is not the kind's */
  "wrong-shard",
  "handler-failed"
])
export type DeadLetterReason = z.infer<typeof DeadLetterReason>

export const DeadLettered = defineMessage(
  "actor.dead-lettered",
  z.object({
    kind: z.string(),
    entityId: z.string().nullable(),
    messageId: z.string().nullable(),
    subject: z.string(),
    streamSequence: z.number().int().nullable(),
    reason: DeadLetterReason,
    detail: z.string()
  }),
  { durable: true }
)

export const AskOutcome = z.enum(["applied", "duplicate", "dead-lettered"])
export type AskOutcome = z.infer<typeof AskOutcome>

export const AskReply = defineMessage(
  "actor.reply",
  z.object({ messageId: z.string(), outcome: AskOutcome, reply: z.unknown().optional() }),
  { durable: false }
)

/** The project token under which runtime events (not owned by a project) are published. */
export const SYSTEM_PROJECT = "system"
