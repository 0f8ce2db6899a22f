import type { Nats } from "@sam/bus"
import { NatsError } from "@sam/bus"
import { Effect } from "effect"
import type { ClaimedRow } from "./Store.js"

const encoder = new TextEncoder()

/**
 * Publish claimed outbox or timer rows with their message id as `Nats-Msg-Id`. All are sent before
 * any acknowledgement is awaited (one connection keeps their order); one failure fails the batch,
 * whose transaction then rolls back so the rows are claimed again: the server drops the repeats.
 */
export const publishRows = (nats: Nats["Type"]) => (rows: ReadonlyArray<ClaimedRow>) =>
  Effect.tryPromise({
    try: () =>
      Promise.all(
        rows.map((row) => nats.js.publish(row.subject, encoder.encode(row.payload), { msgID: row.messageId }))
      ),
    catch: (cause) => new NatsError({ reason: "Publish", message: `outbox publish failed: ${cause}`, cause })
  }).pipe(Effect.asVoid)
