import { Actors } from "@sam/bus"
import { Data } from "effect"

/** A commit refused because the shard's fencing epoch moved on: this instance no longer owns the shard. */
export class Fenced extends Data.TaggedError("Fenced")<{
  readonly kind: string
  readonly shard: number
  readonly epoch: number
  readonly current: number | null
}> {}

/** The actor's own code (load, handle or save) failed; counts toward dead-lettering. */
export class HandlerFailed extends Data.TaggedError("HandlerFailed")<{
  readonly kind: string
  readonly id: string
  readonly messageId: string
  readonly cause: unknown
}> {}

/** An `ask` that got no reply in time; the command may still be applied later. */
/** No answer to an `ask` in time (defined with the client, in bus). */
export const AskTimeout = Actors.AskTimeout
export type AskTimeout = Actors.AskTimeout
