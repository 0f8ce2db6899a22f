import { describe, expect, it } from "@effect/vitest"
import { headers, type Msg } from "@nats-io/nats-core"
import { Actor } from "@sam/actors"
import { Nats } from "@sam/bus"
import { Effect, Layer, Option, type Redacted, Tracer } from "effect"
import { beforeAll } from "vitest"
import { actorsDatabase, waitUntil } from "../../src/ActorsHarness.js"
import { startRuntime } from "../../src/ActorsInProcess.js"
import { counterKind, Increment } from "../../src/CounterActor.js"
import { natsAdmin, sqlLayer, unique } from "../../src/Env.js"

let url: Redacted.Redacted<string>
beforeAll(async () => {
  url = await actorsDatabase()
})
const env = () => Layer.merge(natsAdmin("actors-trace"), sqlLayer(url))

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
const CALLER = "00f067aa0ba902b7"
const traceparent = `00-${TRACE}-${CALLER}-01`

/** A runtime of this test's own for `kind`, once it holds all of the kind's shards. */
const leased = (kind: Actor.AnyActorKind) =>
  Effect.gen(function* () {
    const runtime = yield* startRuntime(url, [kind], { instanceId: unique("inst"), leaseTtl: "3 seconds" })
    yield* waitUntil(
      "all shards leased",
      Effect.sync(() => runtime.shards().length === kind.shards),
      10_000
    )
    return runtime
  })

/** The events the kind's entities emit, as they arrive on the bus (with their headers). */
const events = (kind: Actor.AnyActorKind) =>
  Effect.gen(function* () {
    const { nc } = yield* Nats
    const seen: Array<Msg> = []
    const sub = nc.subscribe(`sam.evt.test.${kind.name}.>`, { callback: (_error, msg) => void seen.push(msg) })
    yield* Effect.addFinalizer(() => Effect.sync(() => sub.unsubscribe()))
    yield* Effect.promise(() => nc.flush())
    return seen
  })

/** Send an increment to `id` as a program would, with or without a `traceparent` header, and await its event. */
const increment = (kind: Actor.AnyActorKind, id: string, seen: Array<Msg>, parent: string | undefined) =>
  Effect.gen(function* () {
    const { js } = yield* Nats
    const command = Increment.make({ seq: 1 })
    const h = headers()
    if (parent !== undefined) h.set("traceparent", parent)
    yield* Effect.promise(() =>
      js.publish(Actor.subjectOf(kind, id), JSON.stringify(command), { msgID: command.id, headers: h })
    )
    const has = () => seen.find((msg) => msg.subject.startsWith(`sam.evt.test.${kind.name}.${id}.`))
    yield* waitUntil(
      `the event of ${id}`,
      Effect.sync(() => has() !== undefined),
      10_000
    )
    return has()!.headers?.get("traceparent") ?? ""
  })

describe("actor runtime: a command's trace context reaches what its handler emits (ADR 0029)", () => {
  it.scopedLive("without an exporter no span is made: the events carry the command's traceparent as it came", () =>
    Effect.gen(function* () {
      const kind = counterKind(unique("k"), 2)
      yield* leased(kind)
      const seen = yield* events(kind)
      expect(yield* increment(kind, "etraced", seen, traceparent)).toBe(traceparent)
      // none, or one that is not W3C-shaped, is not passed on: what the event starts is its receiver's own trace
      expect(yield* increment(kind, "euntraced", seen, undefined)).toBe("")
      expect(yield* increment(kind, "egarbled", seen, "00-not-a-trace-01")).toBe("")
    }).pipe(Effect.provide(env()))
  )

  it.scopedLive(
    "with a tracer each command is an Actor.apply span, the caller's child, and its events carry that span",
    () =>
      Effect.gen(function* () {
        const native = yield* Effect.tracer
        const spans: Array<Tracer.Span> = []
        const recording = Tracer.make({
          span: (name, parent, context, links, startTime, kind, options) => {
            const span = native.span(name, parent, context, links, startTime, kind, options)
            spans.push(span)
            return span
          },
          context: (f, fiber) => native.context(f, fiber)
        })
        const kind = counterKind(unique("k"), 2)
        yield* leased(kind).pipe(Effect.withTracer(recording))
        const seen = yield* events(kind)
        const sent = yield* increment(kind, "etraced", seen, traceparent)

        const apply = spans.find((span) => span.name === "Actor.apply" && span.attributes.get("actor.id") === "etraced")
        expect(apply).toBeDefined()
        expect(apply!.traceId).toBe(TRACE)
        expect(Option.map(apply!.parent, (parent) => parent.spanId)).toEqual(Option.some(CALLER))
        expect(sent).toBe(`00-${TRACE}-${apply!.spanId}-01`)
      }).pipe(Effect.provide(env()))
  )
})
