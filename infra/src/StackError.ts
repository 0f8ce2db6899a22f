import { Data } from "effect"

/** The local stack could not start; `message` says what to do about it. */
export class StackError extends Data.TaggedError("StackError")<{
  readonly step: string
  readonly message: string
  readonly cause?: unknown
}> {}
