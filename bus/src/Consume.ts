import type { ConsumerConfig, ConsumerInfo, JetStreamManager, JsMsg } from "@nats-io/jetstream"
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream"
import { nanos } from "@nats-io/nats-core"
import { Cause, Chunk, Data, Deferred, Duration, Effect, Exit, Queue, Stream } from "effect"
import type { Envelope, Malformed, Registry } from "./Envelope.js"
import { NatsError } from "./Errors.js"
import { Nats } from "./Nats.js"
import { nodeCommands, nodeConsumerName } from "./Subjects.js"
import * as Trace from "./Trace.js"

/** What a handler decided about one delivery. Outcomes are data; `settle` carries them out. */
export type Outcome = Data.TaggedEnum<{
  /** done: the server will not deliver it again */
  // biome-ignore lint/complexity/noBannedTypes: Data.TaggedEnum spells an empty case as {}
  Ack: {}
  /** not now: deliver again after `delay` */
  Nak: { readonly delay: Duration.DurationInput }
  /** never: stop redelivering it; `reason` is for logs and reports, not sent to the server */
  Term: { readonly reason: string }
}>
export const Outcome = Data.taggedEnum<Outcome>()

export interface Delivery<E extends Envelope = Envelope> {
  readonly envelope: E
  readonly subject: string
  readonly streamSequence: number
  /** 1 on first delivery, 2 on the first redelivery, … */
  readonly deliveryCount: number
  readonly msg: JsMsg
}

/** A payload that did not decode; it has already been terminated when this is reported. */
export interface MalformedDelivery {
  readonly stream: string
  readonly consumer: string
  readonly subject: string
  readonly streamSequence: number
  readonly malformed: Malformed
}

export interface ConsumerSpec {
  /** durable name; survives restarts of the consuming process */
  readonly durable: string
  readonly filterSubject: string
  /** how long an unacked delivery waits before redelivery */
  readonly ackWait?: Duration.DurationInput
  /** total deliveries before the server gives up on a message; -1 for unlimited */
  readonly maxDeliver?: number
  readonly maxAckPending?: number
  /**
   * Where a NEW consumer starts: `all` (default) from the stream's first message, `new` from the
   * next one published (a reactor added to a running system must not replay days of history). An
   * existing consumer always resumes from its ack floor.
   */
  readonly startAt?: "all" | "new"
}

const jsError = (what: string) => (cause: unknown) =>
  new NatsError({ reason: "JetStream", message: `${what}: ${cause instanceof Error ? cause.message : cause}`, cause })

/**
 * Create the durable pull consumer if it is missing, or bring its mutable settings to the spec.
 * Safe to call from several processes at once.
 */
/**
 * A stream's consumers, as `jsm.consumers.list` gives them, but those that were deleted while the list was made:
 * nats-server 2.9 lists such a consumer as `null` (seen when a shard's consumer of another instance went meanwhile: the
 * lease tick that read the list failed on it).
 */
export async function* consumersOf(jsm: JetStreamManager, stream: string): AsyncGenerator<ConsumerInfo> {
  for await (const info of jsm.consumers.list(stream)) {
    if ((info as ConsumerInfo | null) !== null) yield info
  }
}

export const ensureConsumer = Effect.fn("Bus.ensureConsumer")(function* (stream: string, spec: ConsumerSpec) {
  const { jsm } = yield* Nats
  const config: Partial<ConsumerConfig> = {
    durable_name: spec.durable,
    filter_subject: spec.filterSubject,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: spec.startAt === "new" ? DeliverPolicy.New : DeliverPolicy.All,
    ack_wait: nanos(Duration.toMillis(Duration.decode(spec.ackWait ?? "30 seconds"))),
    max_deliver: spec.maxDeliver ?? -1,
    max_ack_pending: spec.maxAckPending ?? 1000
  }
  const existing = yield* Effect.tryPromise({
    try: () =>
      jsm.consumers.info(stream, spec.durable).catch((error: unknown) => {
        if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound) return undefined
        throw error
      }),
    catch: jsError(`consumer info ${stream}/${spec.durable}`)
  })
  if (existing === undefined) {
    yield* Effect.tryPromise({
      try: () => jsm.consumers.add(stream, config),
      catch: jsError(`create consumer ${stream}/${spec.durable}`)
    })
  } else if (
    existing.config.ack_wait !== config.ack_wait ||
    existing.config.max_deliver !== config.max_deliver ||
    existing.config.max_ack_pending !== config.max_ack_pending ||
    existing.config.filter_subject !== config.filter_subject
  ) {
    yield* Effect.tryPromise({
      try: () => jsm.consumers.update(stream, spec.durable, config),
      catch: jsError(`update consumer ${stream}/${spec.durable}`)
    })
  }
})

export interface ConsumeOptions {
  /** called for every payload that does not decode, after it was terminated; default: a warning log */
  readonly onMalformed?: (report: MalformedDelivery) => Effect.Effect<void>
  /** messages buffered from the server at once */
  readonly batch?: number
  /** how long one pull request waits on the server (default 30 s) */
  readonly expires?: Duration.DurationInput
  /**
   * `each`: most malformed deliveries waiting for `onMalformed` (default 1,000). More are terminated as the others,
   * and counted in one warning rather than reported each: a node that floods its subject cannot grow this process.
   */
  readonly malformedBacklog?: number
}

/**
 * A node's durable command consumer (created by the control plane, read by that node alone). Its
 * deliveries reach the node through its account's service import (ADR 0016); a pull request in
 * flight when the node's connection drops (its JWT rolls over, the network blips) can swallow a
 * delivery, which comes back after `ackWait`. So the wait is short, and the vm-agent marks a command
 * it is still working on as in progress.
 */
export const nodeConsumer = (nodeId: string): ConsumerSpec => ({
  durable: nodeConsumerName(nodeId),
  filterSubject: nodeCommands(nodeId),
  ackWait: NODE_ACK_WAIT
})
export const NODE_ACK_WAIT = "6 seconds"
/** The vm-agent's pull requests live this long, so a stale one ends soon after a reconnect. */
export const NODE_PULL_EXPIRES = "5 seconds"

const logMalformed = (report: MalformedDelivery) =>
  Effect.logWarning(`terminated malformed message on ${report.subject}: ${report.malformed.message}`).pipe(
    Effect.annotateLogs({
      stream: report.stream,
      consumer: report.consumer,
      streamSequence: report.streamSequence,
      reason: report.malformed.reason
    })
  )

/**
 * The consumer's messages handed to `callback` as the client gets them (callback mode: stopping it ends the
 * subscription at once, where the async-iterator mode waits for a pull in flight), until the scope closes; the
 * Deferred fails when the subscription does.
 */
const subscribe = (stream: string, durable: string, options: ConsumeOptions, callback: (msg: JsMsg) => void) =>
  Effect.gen(function* () {
    const { js } = yield* Nats
    const consumer = yield* Effect.tryPromise({
      try: () => js.consumers.get(stream, durable),
      catch: jsError(`open consumer ${stream}/${durable}`)
    })
    const failed = yield* Deferred.make<never, NatsError>()
    yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const subscription = await consumer.consume({
            max_messages: options.batch ?? 256,
            ...(options.expires === undefined ? {} : { expires: Duration.toMillis(Duration.decode(options.expires)) }),
            callback
          })
          void subscription.closed().then((error) => {
            if (error) Deferred.unsafeDone(failed, Exit.fail(jsError(`consume ${stream}/${durable}`)(error)))
          })
          return subscription
        },
        catch: jsError(`consume ${stream}/${durable}`)
      }),
      // stop() ends the subscription at once; close() would wait for a pull in flight to expire.
      (subscription) => Effect.sync(() => subscription.stop())
    )
    return failed
  })

/**
 * A message decoded: its delivery, or, for a payload that does not decode, the report of it once it is terminated
 * (never delivered again).
 */
const decodeOne = <E extends Envelope>(
  stream: string,
  durable: string,
  registry: Pick<Registry, "decode">,
  msg: JsMsg
): { readonly delivery: Delivery<E> } | { readonly malformed: MalformedDelivery } => {
  const decoded = registry.decode(msg.data)
  if (decoded._tag === "Ok") {
    return {
      delivery: {
        envelope: decoded.envelope as unknown as E,
        subject: msg.subject,
        streamSequence: msg.seq,
        deliveryCount: msg.info.deliveryCount,
        msg
      }
    }
  }
  msg.term()
  return {
    malformed: {
      stream,
      consumer: durable,
      subject: msg.subject,
      streamSequence: msg.seq,
      malformed: decoded.malformed
    }
  }
}

/**
 * The deliveries of a durable consumer as a Stream of decoded envelopes. A payload that does not
 * decode is terminated (never redelivered), reported through `onMalformed`, and skipped: one bad
 * message never stops the stream. Each emitted delivery must be settled with `settle`.
 */
export const consume = <Defs extends ReadonlyArray<{ readonly type: string }>, E extends Envelope>(
  stream: string,
  durable: string,
  registry: Pick<Registry, "decode"> & { readonly defs: Defs },
  options: ConsumeOptions = {}
): Stream.Stream<Delivery<E>, NatsError, Nats> =>
  Stream.unwrapScoped(
    Effect.gen(function* () {
      const onMalformed = options.onMalformed ?? logMalformed
      const batch = options.batch ?? 256
      // Each message goes straight into a queue, without a fiber of its own, and is taken with whatever else waits
      // there (issue 12): the server holds back what is over the consumer's max_ack_pending, so the queue stays
      // bounded.
      const queue = yield* Effect.acquireRelease(Queue.unbounded<JsMsg>(), Queue.shutdown)
      const failed = yield* subscribe(stream, durable, options, (msg) => void queue.unsafeOffer(msg))
      /** What waits, decoded; a payload that does not decode is terminated, reported and left out. */
      const decodeAll = (msgs: Chunk.Chunk<JsMsg>) =>
        Effect.gen(function* () {
          const out: Array<Delivery<E>> = []
          for (const msg of msgs) {
            const one = decodeOne<E>(stream, durable, registry, msg)
            if ("delivery" in one) out.push(one.delivery)
            else yield* onMalformed(one.malformed)
          }
          return Chunk.unsafeFromArray(out)
        })
      return Stream.fromQueue(queue, { maxChunkSize: batch }).pipe(
        Stream.mapChunksEffect(decodeAll),
        Stream.interruptWhen(Deferred.await(failed))
      )
    })
  )

/**
 * The deliveries of a durable consumer handed to `onDelivery` as they come, decoded, in order, from the client's
 * callback: no stream, queue or fiber between the socket and `onDelivery` (issue 12: for a consumer every event
 * crosses, the report ingress). What does not decode is terminated and reported through `onMalformed`, as
 * `consume` does. Runs until interrupted; fails when the subscription does. `onDelivery` must not throw: it queues.
 */
export const each = <E extends Envelope>(
  stream: string,
  durable: string,
  registry: Pick<Registry, "decode">,
  onDelivery: (delivery: Delivery<E>) => void,
  options: ConsumeOptions = {}
): Effect.Effect<never, NatsError, Nats> =>
  Effect.scoped(
    Effect.gen(function* () {
      const onMalformed = options.onMalformed ?? logMalformed
      // reported one after the other, in the order they came (an audit of them reads in that order)
      const malformed = yield* Effect.acquireRelease(
        Queue.dropping<MalformedDelivery>(options.malformedBacklog ?? 1_000),
        Queue.shutdown
      )
      /** terminated while the backlog was full: not reported one by one */
      let unreported = 0
      const countUnreported = Effect.suspend(() => {
        if (unreported === 0) return Effect.void
        const n = unreported
        unreported = 0
        return Effect.logWarning(
          `${stream}/${durable}: ${n} more malformed messages were terminated without a report each (they came faster than they could be reported)`
        )
      })
      yield* Effect.forkScoped(
        Queue.take(malformed).pipe(
          Effect.flatMap((bad) =>
            Effect.catchAllCause(onMalformed(bad), (cause) =>
              Effect.logWarning(`${stream}/${durable}: reporting a malformed delivery failed`, Cause.pretty(cause))
            )
          ),
          Effect.zipRight(countUnreported),
          Effect.forever
        )
      )
      const failed = yield* subscribe(stream, durable, options, (msg) => {
        const one = decodeOne<E>(stream, durable, registry, msg)
        if ("delivery" in one) onDelivery(one.delivery)
        else if (!malformed.unsafeOffer(one.malformed)) unreported++
      })
      return yield* Deferred.await(failed)
    })
  )

/**
 * Carry out an outcome on the server. A term is sent without its reason: nats-server 2.9 ignores a
 * `+TERM` that carries one (the message would stay pending), so reasons go to logs and reports.
 */
export const settle = (delivery: Delivery, outcome: Outcome): Effect.Effect<void> =>
  Effect.sync(() =>
    Outcome.$match(outcome, {
      Ack: () => delivery.msg.ack(),
      Nak: ({ delay }) => delivery.msg.nak(Duration.toMillis(Duration.decode(delay))),
      Term: () => delivery.msg.term()
    })
  )

/**
 * Handle one delivery and settle it with the outcome the handler returns. A handler that fails or dies
 * naks the delivery after `retryDelay` (default 1 s).
 */
export const handleOne =
  <E extends Envelope, R>(
    handler: (delivery: Delivery<E>) => Effect.Effect<Outcome, unknown, R>,
    options: { readonly retryDelay?: Duration.DurationInput } = {}
  ) =>
  (delivery: Delivery<E>): Effect.Effect<void, never, R> =>
    handler(delivery).pipe(
      Effect.catchAllCause((cause) =>
        Effect.logWarning(`handler failed for ${delivery.subject}; will redeliver`, Cause.pretty(cause)).pipe(
          Effect.as(Outcome.Nak({ delay: Duration.decode(options.retryDelay ?? "1 second") }))
        )
      ),
      Effect.tap((outcome) =>
        outcome._tag === "Term"
          ? Effect.logWarning(`terminated ${delivery.envelope.type} on ${delivery.subject}: ${outcome.reason}`)
          : Effect.void
      ),
      Effect.flatMap((outcome) => settle(delivery, outcome)),
      // What the handler publishes follows the message it handles (issue 12).
      Trace.withCorrelation(delivery.envelope.correlationId),
      Trace.handling("Bus.handle", delivery.msg.headers?.get("traceparent"), () => ({
        subject: delivery.subject,
        streamSequence: delivery.streamSequence,
        type: delivery.envelope.type
      }))
    )

/**
 * Run a handler over every delivery, one at a time, settling each with the outcome it returns. A
 * handler that fails or dies naks the delivery after `retryDelay` (default 1 s) and the loop goes on.
 */
export const run = <E extends Envelope, R>(
  deliveries: Stream.Stream<Delivery<E>, NatsError, Nats>,
  handler: (delivery: Delivery<E>) => Effect.Effect<Outcome, unknown, R>,
  options: { readonly retryDelay?: Duration.DurationInput } = {}
): Effect.Effect<void, NatsError, Nats | R> => Stream.runForEach(deliveries, handleOne(handler, options))
