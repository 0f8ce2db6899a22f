import { randomBytes } from "node:crypto"
import { Cause, Context, Effect, Exit, Layer, Option, Redacted, Schedule, Tracer } from "effect"
import { z } from "zod"
import * as Trace from "./Trace.js"

/**
 * Spans to an OpenTelemetry collector (issue 12: one message, followed), when the standard variables ask for it:
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL) or `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` is added),
 * `OTEL_EXPORTER_OTLP_HEADERS` / `…_TRACES_HEADERS` (`key=value,…`, URL-encoded: a collector's API key; never
 * logged), `OTEL_SERVICE_NAME` (default `sam-<role>`; the resource's `sam.process` says the role either way);
 * `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true` turn it off; `OTEL_TRACES_SAMPLER` and
 * `OTEL_TRACES_SAMPLER_ARG` choose which traces are kept (`Sampler`). The protocol is OTLP/HTTP with JSON bodies
 * (`http/json`); a process asked for another one says so and exports nothing. Spans not yet sent when a process is
 * killed (at most a second's, or 4,096) are lost with it; a stop sends them first.
 *
 * Every span Effect makes in the process is exported (`Actor.apply`, `Bus.handle`, `VmAgent.command`, SQL
 * statements, HTTP requests…) with the W3C ids that `traceparent` carries between processes (`Trace.ts`), so a
 * collector shows one trace per request across the gateway, the actors and the node. Ended spans are sent in
 * batches (every second, or at once when 512 wait); at most 4,096 wait, and what a collector that is down or slow
 * cannot take is dropped and counted, never held up: tracing never slows the path it measures.
 */

/**
 * Which traces are exported, as OpenTelemetry's `OTEL_TRACES_SAMPLER` names it: a trace that begins here is kept
 * always (`always_on`), never (`always_off`), or for a share of trace ids (`traceidratio`, the share in
 * `OTEL_TRACES_SAMPLER_ARG`, 0 to 1, by default 1); `parentbased_…` (the default: `parentbased_always_on`) keeps a
 * span whose parent came with it (another process's, by its `traceparent`) if and only if that parent was kept, so a
 * request is kept or dropped whole across the gateway, the actors and the nodes. The per-message spans are not made
 * at all for a trace that is not kept (`Trace.Sampling`, which the exporter's tracer answers); another span of such
 * a trace is made but never sent, and its ids go on in `traceparent`, flagged not sampled. At agent speed every event
 * makes spans in each process it crosses: a share keeps that cost, and the collector's load, in proportion (issue 12).
 */
export interface Sampler {
  /** the name it was given (for the log) */
  readonly name: string
  readonly parentBased: boolean
  /** the share of the traces that begin here that are kept: 1 always, 0 never */
  readonly ratio: number
}

/** All traces, and a remote parent's choice: OpenTelemetry's default, and what is used when none is named. */
const DEFAULT_SAMPLER: Sampler = { name: "parentbased_always_on", parentBased: true, ratio: 1 }

const SAMPLERS: Record<string, { readonly parentBased: boolean; readonly ratio?: number }> = {
  always_on: { parentBased: false, ratio: 1 },
  always_off: { parentBased: false, ratio: 0 },
  traceidratio: { parentBased: false },
  parentbased_always_on: { parentBased: true, ratio: 1 },
  parentbased_always_off: { parentBased: true, ratio: 0 },
  parentbased_traceidratio: { parentBased: true }
}

/** The sampler the environment names, or why it cannot be used. */
const samplerOf = (env: NodeJS.ProcessEnv): Sampler | string => {
  const name = env.OTEL_TRACES_SAMPLER?.trim().toLowerCase() || DEFAULT_SAMPLER.name
  const known = SAMPLERS[name]
  if (known === undefined)
    return `OTEL_TRACES_SAMPLER ${name} is not supported (one of ${Object.keys(SAMPLERS).join(", ")})`
  if (known.ratio !== undefined) return { name, parentBased: known.parentBased, ratio: known.ratio }
  const arg = env.OTEL_TRACES_SAMPLER_ARG?.trim()
  const ratio = arg === undefined || arg === "" ? 1 : Number(arg)
  if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1)
    return `OTEL_TRACES_SAMPLER_ARG ${arg} is not a share between 0 and 1`
  return { name, parentBased: known.parentBased, ratio }
}

/**
 * Whether a trace that begins here is kept: its id's last 56 bits against the share (the same answer for the same
 * trace id in every process, so a ratio sampler without parents still keeps or drops a trace whole).
 */
export const keeps = (ratio: number, traceId: string) =>
  ratio >= 1 ? true : ratio <= 0 ? false : Number.parseInt(traceId.slice(-14), 16) / 2 ** 56 < ratio

/** Whether `sampler` keeps a span of the trace `traceId` under `parent` (none: the trace begins with it). */
const kept = (sampler: Sampler, parent: Option.Option<Tracer.AnySpan>, traceId: string) =>
  sampler.parentBased && Option.isSome(parent) ? parent.value.sampled : keeps(sampler.ratio, traceId)

export interface Settings {
  readonly url: string
  readonly headers: Redacted.Redacted<Readonly<Record<string, string>>>
  readonly service: string
  /** which of SAM's processes this is (`control-plane`, `vm-agent`): the resource's `sam.process` */
  readonly role: string
  /** which traces are kept (default: all, and what a remote parent kept) */
  readonly sampler?: Sampler
}

export type Configured =
  | { readonly _tag: "Off" }
  | { readonly _tag: "Invalid"; readonly reason: string }
  | { readonly _tag: "On"; readonly settings: Settings }

const HttpUrl = z
  .string()
  .url()
  .refine((url) => /^https?:$/.test(new URL(url).protocol), "an http(s) URL")

/** `key=value,…` with URL-encoded parts (the OTLP exporter's header format); a malformed pair is an error. */
const parseHeaders = (text: string | undefined): Record<string, string> | string => {
  const headers: Record<string, string> = {}
  for (const pair of (text ?? "").split(",")) {
    if (pair.trim() === "") continue
    const at = pair.indexOf("=")
    if (at <= 0) return "a header is not key=value"
    try {
      headers[decodeURIComponent(pair.slice(0, at).trim())] = decodeURIComponent(pair.slice(at + 1).trim())
    } catch {
      return "a header is not URL-encoded"
    }
  }
  return headers
}

/** The traces path under a base endpoint (its query kept), or none for what is not a URL. */
const tracesUnder = (base: string) => {
  try {
    const url = new URL(base)
    url.pathname = `${url.pathname.replace(/\/+$/, "")}/v1/traces`
    return url.toString()
  } catch {
    return undefined
  }
}

/** What the environment asks for. */
export const configured = (env: NodeJS.ProcessEnv, role: string): Configured => {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return { _tag: "Off" }
  if (env.OTEL_TRACES_EXPORTER?.trim().toLowerCase() === "none") return { _tag: "Off" }
  const full = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim()
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim()
  if (!full && !base) return { _tag: "Off" }
  const protocol = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL)?.trim()
  if (protocol && protocol !== "http/json")
    return { _tag: "Invalid", reason: `protocol ${protocol} is not supported (only http/json)` }
  const url = full ? full : tracesUnder(base!)
  if (url === undefined || !HttpUrl.safeParse(url).success)
    return {
      _tag: "Invalid",
      reason: `${full ? "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" : "OTEL_EXPORTER_OTLP_ENDPOINT"} is not an http(s) URL`
    }
  const headers = parseHeaders(env.OTEL_EXPORTER_OTLP_TRACES_HEADERS ?? env.OTEL_EXPORTER_OTLP_HEADERS)
  if (typeof headers === "string") return { _tag: "Invalid", reason: `OTEL_EXPORTER_OTLP_HEADERS: ${headers}` }
  const service = env.OTEL_SERVICE_NAME?.trim() || `sam-${role}`
  const sampler = samplerOf(env)
  if (typeof sampler === "string") return { _tag: "Invalid", reason: sampler }
  return { _tag: "On", settings: { url, headers: Redacted.make(headers), service, role, sampler } }
}

/** The collector's address as it may be shown: no credentials, no query. */
export const shown = (url: string) => {
  const parsed = new URL(url)
  return `${parsed.protocol}//${parsed.host}${parsed.pathname}`
}

// OTLP's JSON mapping: ids as hex, 64-bit integers as decimal strings, enums as numbers.
type AnyValue =
  | { readonly stringValue: string }
  | { readonly boolValue: boolean }
  | { readonly intValue: string }
  | { readonly doubleValue: number }
  | { readonly arrayValue: { readonly values: ReadonlyArray<AnyValue> } }

const MAX_TEXT = 4_096
const anyValue = (value: unknown): AnyValue => {
  if (typeof value === "string") return { stringValue: value.slice(0, MAX_TEXT) }
  if (typeof value === "boolean") return { boolValue: value }
  if (typeof value === "bigint") return { intValue: value.toString() }
  if (typeof value === "number") return Number.isInteger(value) ? { intValue: String(value) } : { doubleValue: value }
  if (Array.isArray(value)) return { arrayValue: { values: value.slice(0, 64).map(anyValue) } }
  let text: string
  try {
    text = JSON.stringify(value) ?? String(value)
  } catch {
    text = String(value)
  }
  return { stringValue: text.slice(0, MAX_TEXT) }
}
/**
 * A span's attributes as OTLP's key-value list. A URL's query is left out: it may carry what is secret (an OAuth
 * callback's `code` and `state`); the HTTP server's spans otherwise keep their headers redacted (`Gateway.ts`).
 */
const attributes = (entries: Iterable<readonly [string, unknown]>) => {
  const out: Array<{ readonly key: string; readonly value: AnyValue }> = []
  for (const [key, value] of entries) {
    if (key === "url.query") continue
    out.push({ key, value: anyValue(key === "url.full" && typeof value === "string" ? value.split("?")[0] : value) })
  }
  return out
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error)).slice(0, 1_000)

const KIND: Record<Tracer.SpanKind, number> = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 }

/** A span Effect makes and this exporter sends once it ends. */
class ExportedSpan implements Tracer.Span {
  readonly _tag = "Span"
  readonly traceId: string
  readonly spanId = randomBytes(8).toString("hex")
  /** kept (`Sampler`): exported once it ends, and `01` in the `traceparent` it passes on */
  readonly sampled: boolean
  status: Tracer.SpanStatus
  readonly attributes = new Map<string, unknown>()
  readonly events: Array<readonly [string, bigint, Record<string, unknown>]> = []
  readonly links: Array<Tracer.SpanLink>

  constructor(
    readonly name: string,
    readonly parent: Option.Option<Tracer.AnySpan>,
    readonly context: Tracer.Span["context"],
    links: Iterable<Tracer.SpanLink>,
    startTime: bigint,
    readonly kind: Tracer.SpanKind,
    sampler: Sampler,
    private readonly ended: (span: ExportedSpan) => void
  ) {
    this.status = { _tag: "Started", startTime }
    this.traceId = Option.isSome(parent)
      ? parent.value.traceId
      : Option.getOrElse(Context.getOption(context, Trace.RootTrace), () => randomBytes(16).toString("hex"))
    this.sampled = kept(sampler, parent, this.traceId)
    this.links = Array.from(links)
  }

  end(endTime: bigint, exit: Exit.Exit<unknown, unknown>) {
    this.status = { _tag: "Ended", startTime: this.status.startTime, endTime, exit }
    this.ended(this)
  }
  attribute(key: string, value: unknown) {
    this.attributes.set(key, value)
  }
  event(name: string, startTime: bigint, attributes?: Record<string, unknown>) {
    this.events.push([name, startTime, attributes ?? {}])
  }
  addLinks(links: ReadonlyArray<Tracer.SpanLink>) {
    this.links.push(...links)
  }

  toJson() {
    const status = this.status
    const endTime = status._tag === "Ended" ? status.endTime : status.startTime
    const failed =
      status._tag === "Ended" && Exit.isFailure(status.exit) && !Cause.isInterruptedOnly(status.exit.cause)
        ? status.exit.cause
        : undefined
    return {
      traceId: this.traceId,
      spanId: this.spanId,
      ...(Option.isSome(this.parent) ? { parentSpanId: this.parent.value.spanId } : {}),
      name: this.name,
      kind: KIND[this.kind] ?? 1,
      startTimeUnixNano: status.startTime.toString(),
      endTimeUnixNano: endTime.toString(),
      attributes: attributes(this.attributes),
      events: this.events.map(([name, time, attrs]) => ({
        name,
        timeUnixNano: time.toString(),
        attributes: attributes(Object.entries(attrs))
      })),
      links: this.links.map((link) => ({
        traceId: link.span.traceId,
        spanId: link.span.spanId,
        attributes: attributes(Object.entries(link.attributes))
      })),
      status: failed === undefined ? { code: 0 } : { code: 2, message: messageOf(Cause.squash(failed)) }
    }
  }
}

const BATCH = 512
const MAX_WAITING = 4_096
const EVERY = "1 second"
const TIMEOUT_MS = 10_000
const STOP_FLUSH_MS = 2_000

/**
 * The tracer and what sends its spans: `flush` posts what waits (one request of up to `BATCH` spans at a time);
 * `dropped` counts what could not be sent.
 */
export const make = (settings: Settings) => {
  const sampler = settings.sampler ?? DEFAULT_SAMPLER
  let waiting: Array<ExportedSpan> = []
  let sending: Promise<void> | undefined
  const stats = { exported: 0, dropped: 0, failures: 0, lastError: undefined as string | undefined }
  const resource = {
    attributes: attributes([
      ["service.name", settings.service],
      ["sam.process", settings.role],
      ["process.pid", process.pid]
    ])
  }

  const post = async (spans: ReadonlyArray<ExportedSpan>) => {
    const body = JSON.stringify({
      resourceSpans: [{ resource, scopeSpans: [{ scope: { name: "sam" }, spans: spans.map((s) => s.toJson()) }] }]
    })
    try {
      const response = await fetch(settings.url, {
        method: "POST",
        headers: { ...Redacted.value(settings.headers), "content-type": "application/json" },
        body,
        signal: AbortSignal.timeout(TIMEOUT_MS)
      })
      await response.arrayBuffer().catch(() => undefined)
      if (!response.ok) throw new Error(`the collector answered ${response.status}`)
      stats.exported += spans.length
    } catch (error) {
      stats.failures++
      stats.dropped += spans.length
      stats.lastError = error instanceof Error ? error.message : String(error)
    }
  }

  /** Send everything that waits, a batch at a time; one sender at a time. */
  const flush = (): Promise<void> => {
    if (sending !== undefined) return sending.then(() => (waiting.length > 0 ? flush() : undefined))
    if (waiting.length === 0) return Promise.resolve()
    sending = (async () => {
      while (waiting.length > 0) {
        const batch = waiting.slice(0, BATCH)
        waiting = waiting.slice(BATCH)
        await post(batch)
      }
    })().finally(() => {
      sending = undefined
    })
    return sending
  }

  const ended = (span: ExportedSpan) => {
    if (!span.sampled) return
    if (waiting.length >= MAX_WAITING) {
      stats.dropped++
      return
    }
    waiting.push(span)
    if (waiting.length >= BATCH && sending === undefined) void flush()
  }

  /** asked before a per-message span is made (`Trace.Sampling`): the same choice the span would make itself */
  const sampling: Trace.Sampling = (parent) => {
    if (Option.isSome(parent)) {
      return kept(sampler, parent, parent.value.traceId)
        ? { keep: true, context: Context.empty() }
        : { keep: false, parent: parent.value }
    }
    const traceId = randomBytes(16).toString("hex")
    return kept(sampler, parent, traceId)
      ? { keep: true, context: Context.make(Trace.RootTrace, traceId) }
      : {
          keep: false,
          parent: Tracer.externalSpan({ traceId, spanId: randomBytes(8).toString("hex"), sampled: false })
        }
  }
  const tracer = Object.assign(
    Tracer.make({
      span: (name, parent, context, links, startTime, kind) =>
        new ExportedSpan(name, parent, context, links, startTime, kind, sampler, ended),
      context: (f) => f()
    }),
    // not for `always_on`, which keeps every span (asking first would change nothing)
    !sampler.parentBased && sampler.ratio >= 1 ? {} : { [Trace.SamplingKey]: sampling }
  )

  return { tracer, flush, stats }
}

/** How the log says which traces are kept: nothing for the default (all, and what a remote parent kept). */
export const describeSampler = (sampler: Sampler | undefined) =>
  sampler === undefined || (sampler.parentBased && sampler.ratio >= 1)
    ? ""
    : `; ${sampler.name}: ${sampler.ratio >= 1 ? "all" : `${+(sampler.ratio * 100).toFixed(3)}%`} of the traces that begin here${sampler.parentBased ? ", and those another process kept" : ""}`

/**
 * The process's tracer from its environment (`configured`): spans sent to the collector, flushed every second and
 * when the process stops; nothing when no collector is configured. A collector that fails is reported once a
 * minute at most (what failed and how many spans were dropped; never its headers).
 */
export const layer = (
  role: "control-plane" | "vm-agent",
  /** `quiet`: the process says itself whether and where it exports (`sam up`'s steps); failures are still logged */
  options: { readonly quiet?: boolean } = {}
): Layer.Layer<never> =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      const config = configured(process.env, role)
      if (config._tag === "Off") return Layer.empty
      if (config._tag === "Invalid") {
        if (options.quiet !== true) yield* Effect.logWarning(`tracing: spans are not exported: ${config.reason}`)
        return Layer.empty
      }
      const exporter = make(config.settings)
      const where = shown(config.settings.url)
      if (options.quiet !== true)
        yield* Effect.logInfo(
          `tracing: spans of ${config.settings.service} go to ${where} (OTLP/HTTP JSON${describeSampler(config.settings.sampler)})`
        )
      let reported = { failures: 0, dropped: 0 }
      const report = Effect.suspend(() => {
        const { failures, dropped, lastError } = exporter.stats
        if (failures === reported.failures && dropped === reported.dropped) return Effect.void
        const message = `tracing: ${dropped - reported.dropped} spans dropped in the last minute (${where}: ${lastError ?? "too many waiting"})`
        reported = { failures, dropped }
        return Effect.logWarning(message)
      })
      yield* Effect.promise(() => exporter.flush()).pipe(Effect.repeat(Schedule.spaced(EVERY)), Effect.forkScoped)
      yield* report.pipe(Effect.repeat(Schedule.spaced("1 minute")), Effect.forkScoped)
      // what waits goes as the process stops, but a collector that does not answer holds up no stop for long
      yield* Effect.addFinalizer(() =>
        Effect.promise(() => exporter.flush()).pipe(Effect.timeout(STOP_FLUSH_MS), Effect.ignore)
      )
      return Layer.setTracer(exporter.tracer)
    })
  )
