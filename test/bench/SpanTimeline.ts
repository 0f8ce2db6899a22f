import { type Context, type Exit, Option, Tracer } from "effect"

/**
 * The spans of this process laid out on one clock, for reading where a path's time goes: each span's
 * start (ms after a given moment), its duration, its name and what it ran (an SQL statement's text, an
 * envelope's type). A bench runs its program under `tracer` and prints `between` a task's start and end.
 * Only the bench's own process is seen; a vm-agent's time shows as the gap before the report it sends.
 */
export interface Recorded {
  readonly name: string
  /** epoch milliseconds, as `performance.timeOrigin + performance.now()` */
  readonly start: number
  readonly end: number
  readonly what: string
}

const DETAIL_KEYS = ["db.query.text", "message.type", "type", "actor.kind"]
const MAX_KEPT = 200_000

export const make = () => {
  let kept: Array<Recorded> = []
  let ids = 0
  const hex = (n: number, width: number) => n.toString(16).padStart(width, "0")
  class RecordingSpan implements Tracer.Span {
    readonly _tag = "Span"
    readonly spanId = hex(++ids, 16)
    readonly traceId: string
    readonly sampled = true
    readonly attributes = new Map<string, unknown>()
    readonly links: Array<Tracer.SpanLink>
    status: Tracer.SpanStatus
    constructor(
      readonly name: string,
      readonly parent: Option.Option<Tracer.AnySpan>,
      readonly context: Context.Context<never>,
      links: ReadonlyArray<Tracer.SpanLink>,
      startTime: bigint,
      readonly kind: Tracer.SpanKind
    ) {
      this.traceId = Option.isSome(parent) ? parent.value.traceId : hex(ids, 32)
      this.links = [...links]
      this.status = { _tag: "Started", startTime }
    }
    end(endTime: bigint, exit: Exit.Exit<unknown, unknown>) {
      const startTime = this.status.startTime
      this.status = { _tag: "Ended", startTime, endTime, exit }
      if (kept.length >= MAX_KEPT) return
      const detail = DETAIL_KEYS.map((key) => this.attributes.get(key)).find((value) => value !== undefined)
      kept.push({
        name: this.name,
        start: Number(startTime) / 1e6,
        end: Number(endTime) / 1e6,
        what: detail === undefined ? "" : String(detail).replace(/\s+/g, " ").trim().slice(0, 90)
      })
    }
    attribute(key: string, value: unknown) {
      this.attributes.set(key, value)
    }
    event() {}
    addLinks(links: ReadonlyArray<Tracer.SpanLink>) {
      this.links.push(...links)
    }
  }
  const tracer = Tracer.make({
    span: (name, parent, context, links, startTime, kind) =>
      new RecordingSpan(name, parent, context, links, startTime, kind),
    context: (f) => f()
  })
  /** The spans that overlap [from, to] (epoch ms), as lines ordered by start; what was kept is dropped. */
  const between = (from: number, to: number): Array<string> => {
    const lines = kept
      .filter((span) => span.end >= from && span.start <= to)
      .sort((a, b) => a.start - b.start)
      .map(
        (span) =>
          `${(span.start - from).toFixed(1).padStart(8)} ms  +${(span.end - span.start).toFixed(1).padStart(6)}  ${span.name}${span.what === "" ? "" : `  ${span.what}`}`
      )
    kept = []
    return lines
  }
  const clear = () => {
    kept = []
  }
  return { tracer, between, clear }
}
