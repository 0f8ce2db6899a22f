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
export class AskTimeout extends Data.TaggedError("AskTimeout")<{
  readonly kind: string
  readonly id: string
  readonly messageId: string
}> {}
