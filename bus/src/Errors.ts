import { Data } from "effect"
import { z } from "zod"

/** A failure talking to NATS. `reason` says which kind; `cause` keeps the client's error. */
export class NatsError extends Data.TaggedError("NatsError")<{
  readonly reason: "Connect" | "Publish" | "Request" | "JetStream" | "Kv" | "Permission" | "Timeout"
  readonly message: string
  readonly cause?: unknown
}> {}

/** A KV write refused because the key's revision was not the one given (someone wrote first). */
export class KvConflict extends Data.TaggedError("KvConflict")<{
  readonly bucket: string
  readonly key: string
  readonly expectedRevision: number
}> {}

/** A KV value that no longer parses against its schema. */
export class KvCorrupt extends Data.TaggedError("KvCorrupt")<{
  readonly bucket: string
  readonly key: string
  readonly message: string
}> {}

/** The server's stream or bucket differs from the declared topology in a way that cannot be updated. */
export class TopologyDrift extends Data.TaggedError("TopologyDrift")<{
  readonly name: string
  readonly differences: ReadonlyArray<string>
  readonly message: string
}> {}

/** Errors that cross a process boundary are data. */
export const ErrorBody = z.object({
  code: z.string(),
  message: z.string(),
  details: z.unknown().optional()
})
export type ErrorBody = z.infer<typeof ErrorBody>
