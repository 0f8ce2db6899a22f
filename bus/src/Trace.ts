import type { MsgHdrs } from "@nats-io/nats-core"
import { headers as natsHeaders } from "@nats-io/nats-core"
import { Context, Effect, FiberRef, Option, Tracer } from "effect"
import type { Envelope } from "./Envelope.js"

/**
 * One message followed from end to end (issue 12). The correlation id of an HTTP request (its
 * `X-Request-Id`) rides on every envelope it causes: the gateway sets it for the request's fiber,
 * `stamp` copies it onto envelopes published from that fiber, the actor runtime copies a command's onto
 * whatever its handler emits and onto the fiber that handles it, the vm-agent onto the reports of the
 * turn a command started, and the feed onto its frames. W3C trace context (`traceparent`) travels in
 * NATS headers next to it, so spans of every hop join one trace when a tracer is configured.
 */
export const correlation: FiberRef.FiberRef<string | undefined> = FiberRef.unsafeMake<string | undefined>(undefined)

/** Run `effect` with `id` as the correlation id of what it publishes. */
export const withCorrelation =
  (id: string | undefined) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    id === undefined ? effect : Effect.locally(effect, correlation, id)

/** The envelope with the current correlation id when it has none of its own. */
export const stamp = <E extends Envelope>(envelope: E): Effect.Effect<E> =>
  envelope.correlationId !== undefined
    ? Effect.succeed(envelope)
    : FiberRef.get(correlation).pipe(
        Effect.map((id) => (id === undefined ? envelope : ({ ...envelope, correlationId: id } as E)))
      )

const HEX = /^[0-9a-f]+$/
const ZERO = /^0+$/

/** `traceparent` of a span: `00-<trace id>-<span id>-01`, or none when the ids are not W3C-shaped. */
export const traceparentOf = (span: Tracer.AnySpan): string | undefined => {
  const traceId = span.traceId.toLowerCase()
  const spanId = span.spanId.toLowerCase()
  if (traceId.length !== 32 || spanId.length !== 16 || !HEX.test(traceId) || !HEX.test(spanId)) return undefined
  if (ZERO.test(traceId) || ZERO.test(spanId)) return undefined // `untraced`, or invalid in W3C's terms
  return `00-${traceId}-${spanId}-${span.sampled ? "01" : "00"}`
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** The remote parent a `traceparent` header names, or none for a missing or malformed one. */
export const parentOf = (traceparent: string | undefined): Option.Option<Tracer.ExternalSpan> => {
  const match = traceparent === undefined ? null : TRACEPARENT.exec(traceparent)
  if (match === null) return Option.none()
  const [, traceId = "", spanId = "", flags = "00"] = match
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return Option.none()
  return Option.some(Tracer.externalSpan({ traceId, spanId, sampled: (Number.parseInt(flags, 16) & 1) === 1 }))
}

/**
 * The span options of a message's handling: a child of the remote span its `traceparent` header names, or, without
 * one, the root of a trace of its own (not a child of whatever long-lived fiber consumes it, which would make one
 * endless trace of a process's every message).
 */
export const spanOf = (
  traceparent: string | undefined
): { readonly parent: Tracer.ExternalSpan } | { readonly root: true } =>
  Option.match(parentOf(traceparent), {
    onNone: () => ({ root: true }) as const,
    onSome: (parent) => ({ parent })
  })

/** Run `effect` as a child of the remote span a `traceparent` header names (as is, without one). */
export const continueFrom =
  (traceparent: string | undefined) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Option.match(parentOf(traceparent), {
      onNone: () => effect,
      onSome: (parent) => Effect.withParentSpan(effect, parent)
    })

/** Effect's own tracer, which keeps its spans nowhere: what runs without an exporter (`Otlp.layer`) or a test's tracer. */
const nativeTracer = Effect.runSync(Effect.tracer)

/**
 * Whether spans made here go anywhere: a tracer other than Effect's own is installed (the OTLP exporter when
 * configured, ADR 0029). Without one a span still costs its making (about 10 µs on the 2-core machine of
 * docs/benchmarks.md, a context and its fiber refs copied twice): paths that handle each message skip it then.
 */
export const exported: Effect.Effect<boolean> = Effect.tracerWith((tracer) => Effect.succeed(tracer !== nativeTracer))

/**
 * The parent of a handling that made no span for a message that named no trace: what it publishes carries no
 * `traceparent` (all-zero ids are none, `traceparentOf`), not that of whatever long-lived fiber consumes it.
 */
const untraced = Tracer.externalSpan({ traceId: "0".repeat(32), spanId: "0".repeat(16), sampled: false })

/**
 * The span of a message's handling, made only when spans are exported (`exported`): a child of the remote span
 * `traceparent` names, or a root. Without an exporter the handling runs as the child of that remote span itself, so
 * what it publishes carries the `traceparent` it came with (`currentTraceparent`), and with none, none.
 */
export const handling =
  (
    name: string,
    traceparent: string | undefined,
    attributes: () => Record<string, unknown>
  ): (<A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>) =>
  (effect) =>
    Effect.tracerWith((tracer) =>
      tracer !== nativeTracer
        ? kept(tracer, effect, name, { captureStackTrace: false, ...spanOf(traceparent), attributes: attributes() })
        : Effect.withParentSpan(
            effect,
            Option.getOrElse(parentOf(traceparent), () => untraced)
          )
    )

/**
 * `Effect.withSpan`, made only when spans are exported (`exported`) and its trace is kept (`Sampling`): for a span
 * no message's trace context names, or one whose options name it (`parent`, `root`).
 */
export const span =
  (
    name: string,
    options: () => Tracer.SpanOptions
  ): (<A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>) =>
  (effect) =>
    Effect.tracerWith((tracer) => (tracer !== nativeTracer ? kept(tracer, effect, name, options()) : effect))

/**
 * What an exporting tracer says of a span about to be made under `parent` (none: the first of a new trace), when it
 * keeps only some traces (`Otlp.ts`'s samplers): kept, with the options' context the span is made with (a new
 * trace's id, the one its choice was made on); or not, with the parent to run under instead, making no span (a new
 * trace's unsampled root), so that what the work causes carries the choice on in its `traceparent`. Asked before a
 * per-message span is made (`span`, `handling`): a span costs its making, about 10 µs here, kept or not (issue 12).
 */
export type Sampling = (
  parent: Option.Option<Tracer.AnySpan>
) =>
  | { readonly keep: true; readonly context: Context.Context<never> }
  | { readonly keep: false; readonly parent: Tracer.AnySpan }

/** Where an exporting tracer keeps its `Sampling`. */
export const SamplingKey: unique symbol = Symbol.for("sam/Trace/Sampling")

/** The trace id a new trace's first span takes: the one its sampling was decided on. */
export class RootTrace extends Context.Tag("sam/Trace/RootTrace")<RootTrace, string>() {}

const samplingOf = (tracer: Tracer.Tracer) => (tracer as { readonly [SamplingKey]?: Sampling })[SamplingKey]

/** `effect` in the span `name`, if the tracer keeps its trace; else in no span of its own (`Sampling`). */
const kept = <A, E, R>(
  tracer: Tracer.Tracer,
  effect: Effect.Effect<A, E, R>,
  name: string,
  options: Tracer.SpanOptions
) => {
  const sampling = samplingOf(tracer)
  if (sampling === undefined) return Effect.withSpan(effect, name, options)
  const parent =
    options.parent !== undefined
      ? Effect.succeed(Option.some<Tracer.AnySpan>(options.parent))
      : options.root === true
        ? Effect.succeed(Option.none<Tracer.AnySpan>())
        : Effect.option(Effect.currentParentSpan)
  return Effect.flatMap(parent, (found) => {
    const decided = sampling(found)
    if (!decided.keep) {
      // under the span it would have had (the ambient one stays as it is), or a new trace's unsampled root
      return Option.isSome(found) && options.parent === undefined
        ? effect
        : Effect.withParentSpan(effect, decided.parent)
    }
    return Effect.withSpan(effect, name, {
      ...options,
      context: options.context === undefined ? decided.context : Context.merge(options.context, decided.context)
    })
  })
}

/** A `traceparent` header as it came when it is well-formed (names a remote span), otherwise none. */
export const wellFormed = (traceparent: string | undefined): string | undefined =>
  Option.isSome(parentOf(traceparent)) ? traceparent : undefined

/**
 * The current span as a `traceparent`, or none outside a span (or for ids that are not W3C-shaped). The remote span a
 * handling continues without a span of its own (`handling`, `continueFrom`) counts: its context goes on as it came.
 */
export const currentTraceparent: Effect.Effect<string | undefined> = Effect.map(
  Effect.option(Effect.currentParentSpan),
  (span) => (Option.isSome(span) ? traceparentOf(span.value) : undefined)
)

/**
 * NATS headers for an envelope: its type, its correlation id, and as `traceparent` the trace context given (a turn's,
 * for the reports it causes) or else the current span's.
 */
export const headersFor = (
  envelope: Envelope,
  extra?: Readonly<Record<string, string>>,
  traceparent?: string
): Effect.Effect<MsgHdrs> =>
  Effect.map(traceparent === undefined ? currentTraceparent : Effect.succeed(traceparent), (parent) =>
    headersOf(envelope, parent, extra)
  )

/** `headersFor` with the trace context given, outside any fiber (`Publish.publishNow`). */
export const headersOf = (
  envelope: Envelope,
  traceparent: string | undefined,
  extra?: Readonly<Record<string, string>>
): MsgHdrs => {
  const h = natsHeaders()
  h.set("Sam-Type", envelope.type)
  if (envelope.correlationId !== undefined) h.set("Sam-Correlation-Id", envelope.correlationId)
  if (traceparent !== undefined) h.set("traceparent", traceparent)
  for (const [key, value] of Object.entries(extra ?? {})) h.set(key, value)
  return h
}
