import { Effect } from "effect"
import type { Envelope } from "./Envelope.js"
import { encode } from "./Envelope.js"
import { NatsError } from "./Errors.js"
import { Nats } from "./Nats.js"
import type { StreamAck, StreamPublisher } from "./StreamPublisher.js"
import { headersFor, headersOf, span, stamp } from "./Trace.js"

/** The stream's acknowledgement: `duplicate` when it already had a message with this id within its window. */
export type Published = StreamAck

/**
 * Publish a durable message to its stream with `Nats-Msg-Id` = envelope id, and wait for the
 * server's acknowledgement. Publishing the same envelope again within the stream's duplicate window
 * stores nothing new and returns `duplicate: true`. Fails with `NatsError` (`Publish`) when no stream
 * takes the subject, the server refuses (permissions), or the ack times out.
 */
export const publish = (subject: string, message: Envelope): Effect.Effect<Published, NatsError, Nats> =>
  // a span only when spans are exported (a report forwarded by the ingress publishes one per report)
  publishUntraced(subject, message).pipe(
    span("Bus.publish", () => ({
      captureStackTrace: false,
      attributes: { subject, type: message.type, messageId: message.id }
    }))
  )

/**
 * `publish` without a span of its own, for a path that publishes per event (a vm-agent's session reports,
 * issue 12): the same envelope, stamped, with the current span's `traceparent` in its headers. A span and
 * its stack capture per call cost more than the publish.
 */
export const publishUntraced = (
  subject: string,
  message: Envelope,
  /** the trace context to send instead of the current span's (a turn's, for the reports it causes) */
  traceparent?: string
): Effect.Effect<Published, NatsError, Nats> =>
  Effect.flatMap(Nats, ({ streams }) =>
    Effect.flatMap(stamp(message), (envelope) =>
      Effect.flatMap(headersFor(envelope, undefined, traceparent), (headers) =>
        Effect.tryPromise({
          try: () => streams.publish([{ subject, data: encode(envelope), msgId: envelope.id, headers }]),
          catch: (cause) =>
            new NatsError({
              reason: "Publish",
              message: `publish ${envelope.type} to ${subject} failed: ${cause}`,
              cause
            })
        }).pipe(Effect.map((acks) => acks[0]!))
      )
    )
  )

/**
 * `publishUntraced` as a promise, outside any fiber, for the one path where a fiber's steps cost more than the
 * publish (a vm-agent's session events, issue 12): the envelope as it is (its correlation id set by the caller),
 * with `traceparent` as given. Fails with `NatsError` as `publishUntraced` does.
 */
export const publishNow = (
  streams: StreamPublisher,
  subject: string,
  envelope: Envelope,
  traceparent: string | undefined
): Promise<Published> =>
  streams
    .publish([{ subject, data: encode(envelope), msgId: envelope.id, headers: headersOf(envelope, traceparent) }])
    .then(
      (acks) => acks[0]!,
      (cause: unknown) => {
        throw new NatsError({
          reason: "Publish",
          message: `publish ${envelope.type} to ${subject} failed: ${cause}`,
          cause
        })
      }
    )

/**
 * `publishNow`, tried again after `retry.firstMs` and twice as long each time after that, for as long as `retry.forMs`
 * since the first try allows and `retry.open()` holds (as `Schedule.exponential(firstMs, 2)` up to `forMs` would for
 * `publishUntraced`): `"published"`, `"closed"` when `open()` no longer held after a failure, or the last failure once
 * the time is spent. Never rejects. Every try carries the same envelope, so a publish whose ack was lost is stored
 * once (`Nats-Msg-Id`).
 */
export const publishNowRetrying = (
  streams: StreamPublisher,
  subject: string,
  envelope: Envelope,
  traceparent: string | undefined,
  retry: { readonly firstMs: number; readonly forMs: number; readonly open: () => boolean }
): Promise<"published" | "closed" | NatsError> => {
  const started = Date.now()
  const attempt = (delay: number): Promise<"published" | "closed" | NatsError> =>
    publishNow(streams, subject, envelope, traceparent).then(
      () => "published" as const,
      (error: NatsError) => {
        if (!retry.open()) return "closed" as const
        if (Date.now() - started + delay > retry.forMs) return error
        return new Promise<void>((resolve) => setTimeout(resolve, delay)).then(() => attempt(delay * 2))
      }
    )
  return attempt(retry.firstMs)
}

/** Publish a volatile message on core NATS: delivered to current subscribers only, never stored. */
export const emit = Effect.fn("Bus.emit")(function* (subject: string, message: Envelope) {
  const { nc } = yield* Nats
  const envelope = yield* stamp(message)
  const headers = yield* headersFor(envelope)
  yield* Effect.try({
    try: () => nc.publish(subject, encode(envelope), { headers }),
    catch: (cause) => new NatsError({ reason: "Publish", message: `emit to ${subject} failed: ${cause}`, cause })
  })
})
