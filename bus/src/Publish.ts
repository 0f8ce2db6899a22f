import type { MsgHdrs } from "@nats-io/nats-core"
import { headers as natsHeaders } from "@nats-io/nats-core"
import { Effect } from "effect"
import type { Envelope } from "./Envelope.js"
import { encode } from "./Envelope.js"
import { NatsError } from "./Errors.js"
import { Nats } from "./Nats.js"

export interface Published {
  readonly stream: string
  readonly seq: number
  /** true when the server already had a message with this id within the duplicate window */
  readonly duplicate: boolean
}

const traceHeaders = (envelope: Envelope): MsgHdrs => {
  const h = natsHeaders()
  h.set("Sam-Type", envelope.type)
  if (envelope.correlationId !== undefined) h.set("Sam-Correlation-Id", envelope.correlationId)
  return h
}

/**
 * Publish a durable message to its stream with `Nats-Msg-Id` = envelope id, and wait for the
 * server's acknowledgement. Publishing the same envelope again within the stream's duplicate window
 * stores nothing new and returns `duplicate: true`. Fails with `NatsError` (`Publish`) when no stream
 * takes the subject, the server refuses (permissions), or the ack times out.
 */
export const publish = Effect.fn("Bus.publish")(function* (subject: string, envelope: Envelope) {
  const { js } = yield* Nats
  yield* Effect.annotateCurrentSpan({ subject, type: envelope.type, messageId: envelope.id })
  const ack = yield* Effect.tryPromise({
    try: () => js.publish(subject, encode(envelope), { msgID: envelope.id, headers: traceHeaders(envelope) }),
    catch: (cause) =>
      new NatsError({ reason: "Publish", message: `publish ${envelope.type} to ${subject} failed: ${cause}`, cause })
  })
  return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate } satisfies Published
})

/** Publish a volatile message on core NATS: delivered to current subscribers only, never stored. */
export const emit = Effect.fn("Bus.emit")(function* (subject: string, envelope: Envelope) {
  const { nc } = yield* Nats
  yield* Effect.try({
    try: () => nc.publish(subject, encode(envelope), { headers: traceHeaders(envelope) }),
    catch: (cause) => new NatsError({ reason: "Publish", message: `emit to ${subject} failed: ${cause}`, cause })
  })
})
