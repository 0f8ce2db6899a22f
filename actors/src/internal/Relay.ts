import { headers } from "@nats-io/nats-core"
import type { StreamPublisher } from "@sam/bus"
import { NatsError } from "@sam/bus"
import { Effect } from "effect"
import type { ClaimedRow } from "./Store.js"

const encoder = new TextEncoder()

/**
 * Publish claimed outbox or timer rows with their message id as `Nats-Msg-Id`. All are sent before
 * any acknowledgement is awaited (one connection keeps their order); one failure fails the batch,
 * whose transaction then rolls back so the rows are claimed again: the server drops the repeats.
 */
export const publishRows = (publisher: StreamPublisher) => (rows: ReadonlyArray<ClaimedRow>) =>
  Effect.tryPromise({
    try: () => publishNow(publisher, rows),
    catch: (cause) => new NatsError({ reason: "Publish", message: `outbox publish failed: ${cause}`, cause })
  }).pipe(Effect.asVoid)

/**
 * The same as a promise: every publish is issued before this returns (in order, on one connection), and
 * the promise settles once JetStream has acknowledged them all, or one failed.
 */
export const publishNow = (publisher: StreamPublisher, rows: ReadonlyArray<ClaimedRow>) =>
  publisher.publish(
    rows.map((row) => ({
      subject: row.subject,
      data: encoder.encode(row.payload),
      msgId: row.messageId,
      ...(row.traceparent ? { headers: traceHeaders(row.traceparent) } : {})
    }))
  )

/** The headers of a row written with a trace context: its `traceparent` (issue 12). */
const traceHeaders = (traceparent: string) => {
  const h = headers()
  h.set("traceparent", traceparent)
  return h
}
