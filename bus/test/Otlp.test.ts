import { createServer, type IncomingHttpHeaders } from "node:http"
import type { AddressInfo } from "node:net"
import { Effect, Redacted, Tracer } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { configured, describeSampler, keeps, make, type Sampler, shown } from "../src/Otlp.js"
import * as Trace from "../src/Trace.js"

describe("OTLP settings from the environment", () => {
  it("is off unless an endpoint is named, or when turned off", () => {
    expect(configured({}, "vm-agent")._tag).toBe("Off")
    const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318" }
    expect(configured({ ...endpoint, OTEL_SDK_DISABLED: "true" }, "vm-agent")._tag).toBe("Off")
    expect(configured({ ...endpoint, OTEL_TRACES_EXPORTER: "none" }, "vm-agent")._tag).toBe("Off")
  })

  it("adds /v1/traces to the base endpoint, takes a traces endpoint as it is, and names the service by its role", () => {
    const base = configured({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" }, "control-plane")
    expect(base).toMatchObject({
      _tag: "On",
      settings: { url: "http://collector:4318/v1/traces", service: "sam-control-plane", role: "control-plane" }
    })
    const full = configured(
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://ignored:4318",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://collector.example/otlp/traces",
        OTEL_SERVICE_NAME: "sam-eu"
      },
      "vm-agent"
    )
    expect(full).toMatchObject({
      _tag: "On",
      settings: { url: "https://collector.example/otlp/traces", service: "sam-eu", role: "vm-agent" }
    })
  })

  it("reads URL-encoded headers, keeps them redacted, and shows the address without credentials or query", () => {
    const found = configured(
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: "https://user:secret@collector.example:4318/base?key=secret",
        OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20k3y, x-team = a%2Cb"
      },
      "vm-agent"
    )
    expect(found._tag).toBe("On")
    if (found._tag !== "On") return
    expect(Redacted.value(found.settings.headers)).toEqual({ authorization: "Bearer k3y", "x-team": "a,b" })
    expect(String(found.settings.headers)).not.toContain("k3y")
    expect(shown(found.settings.url)).toBe("https://collector.example:4318/base/v1/traces")
  })

  it("says why it exports nothing for what it cannot do", () => {
    const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318" }
    expect(configured({ ...endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }, "vm-agent")).toEqual({
      _tag: "Invalid",
      reason: "protocol grpc is not supported (only http/json)"
    })
    expect(configured({ ...endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" }, "vm-agent")._tag).toBe("On")
    expect(configured({ OTEL_EXPORTER_OTLP_ENDPOINT: "ftp://collector" }, "vm-agent")).toMatchObject({
      _tag: "Invalid",
      reason: "OTEL_EXPORTER_OTLP_ENDPOINT is not an http(s) URL"
    })
    expect(configured({ ...endpoint, OTEL_EXPORTER_OTLP_HEADERS: "no-equals-sign" }, "vm-agent")).toMatchObject({
      _tag: "Invalid"
    })
  })

  it("reads the sampler: all by default, a share of trace ids, and says why it refuses one it cannot use", () => {
    const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318" }
    const sampler = (env: Record<string, string>) => {
      const found = configured({ ...endpoint, ...env }, "control-plane")
      return found._tag === "On" ? found.settings.sampler : found
    }
    expect(sampler({})).toEqual({ name: "parentbased_always_on", parentBased: true, ratio: 1 })
    expect(sampler({ OTEL_TRACES_SAMPLER: "always_off" })).toEqual({ name: "always_off", parentBased: false, ratio: 0 })
    expect(sampler({ OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.01" })).toEqual({
      name: "parentbased_traceidratio",
      parentBased: true,
      ratio: 0.01
    })
    expect(sampler({ OTEL_TRACES_SAMPLER: "TraceIdRatio" })).toEqual({
      name: "traceidratio",
      parentBased: false,
      ratio: 1
    })
    expect(sampler({ OTEL_TRACES_SAMPLER: "jaeger_remote" })).toMatchObject({
      _tag: "Invalid",
      reason: expect.stringContaining("OTEL_TRACES_SAMPLER jaeger_remote is not supported")
    })
    for (const arg of ["2", "-0.1", "one percent"]) {
      expect(sampler({ OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: arg })).toEqual({
        _tag: "Invalid",
        reason: `OTEL_TRACES_SAMPLER_ARG ${arg} is not a share between 0 and 1`
      })
    }
    // what `up` and the log say of it
    expect(describeSampler({ name: "parentbased_always_on", parentBased: true, ratio: 1 })).toBe("")
    expect(describeSampler({ name: "parentbased_traceidratio", parentBased: true, ratio: 0.01 })).toBe(
      "; parentbased_traceidratio: 1% of the traces that begin here, and those another process kept"
    )
  })

  it("keeps a trace by its id, the same way for the same id, in about the share asked for", () => {
    const random = Array.from({ length: 4_000 }, () =>
      Array.from({ length: 32 }, () => "0123456789abcdef"[Math.floor(Math.random() * 16)]).join("")
    )
    for (const id of random) {
      expect(keeps(1, id)).toBe(true)
      expect(keeps(0, id)).toBe(false)
      expect(keeps(0.25, id)).toBe(keeps(0.25, id))
      // a trace kept at a share is kept at any larger one
      if (keeps(0.1, id)) expect(keeps(0.5, id)).toBe(true)
    }
    const share = random.filter((id) => keeps(0.25, id)).length / random.length
    expect(share).toBeGreaterThan(0.2)
    expect(share).toBeLessThan(0.3)
  })
})

interface SpanJson {
  readonly name: string
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly kind: number
  readonly startTimeUnixNano: string
  readonly endTimeUnixNano: string
  readonly attributes: ReadonlyArray<unknown>
  readonly status: unknown
}

interface Received {
  readonly headers: IncomingHttpHeaders
  // biome-ignore lint/suspicious/noExplicitAny: the posted OTLP JSON, checked field by field below
  readonly body: any
}

describe("the OTLP/HTTP JSON exporter", () => {
  const received: Array<Received> = []
  let status = 200
  const server = createServer((request, response) => {
    let text = ""
    request.on("data", (chunk: Buffer) => (text += chunk))
    request.on("end", () => {
      received.push({ headers: request.headers, body: JSON.parse(text) })
      response.writeHead(status, { "content-type": "application/json" }).end("{}")
    })
  })
  let url = ""
  beforeAll(async () => {
    await new Promise<void>((listening) => server.listen(0, "127.0.0.1", listening))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`
  })
  afterAll(() => new Promise<void>((closed) => server.close(() => closed())))
  /** An exporter to this collector that keeps what `sampler` keeps, with nothing received yet. */
  const sampling = (sampler: Sampler) => {
    received.length = 0
    return make({ url, headers: Redacted.make({}), service: "sam-test", role: "control-plane", sampler })
  }

  it("sends ended spans with their W3C ids, parents, times, attributes and failures, as OTLP's JSON mapping says", async () => {
    received.length = 0
    const exporter = make({
      url,
      headers: Redacted.make({ authorization: "Bearer k3y" }),
      service: "sam-test",
      role: "control-plane"
    })
    await Effect.runPromiseExit(
      Effect.gen(function* () {
        yield* Effect.annotateCurrentSpan({ "url.full": "http://gw/api/v1/auth/github/callback?code=c0de", n: 3 })
        yield* Effect.annotateCurrentSpan("url.query", "code=c0de")
        yield* Effect.void.pipe(
          Effect.withSpan("child", { kind: "client", attributes: { ratio: 0.5, ok: true }, captureStackTrace: false })
        )
        yield* Effect.fail(new Error("it broke")).pipe(Effect.withSpan("failing", { captureStackTrace: false }))
      }).pipe(Effect.withSpan("root", { kind: "server", captureStackTrace: false }), Effect.withTracer(exporter.tracer))
    )
    await exporter.flush()
    expect(received).toHaveLength(1)
    const [{ headers, body }] = received as [Received]
    expect(headers.authorization).toBe("Bearer k3y")
    expect(headers["content-type"]).toBe("application/json")
    const [resourceSpans] = body.resourceSpans
    expect(resourceSpans.resource.attributes).toContainEqual({
      key: "service.name",
      value: { stringValue: "sam-test" }
    })
    expect(resourceSpans.resource.attributes).toContainEqual({
      key: "sam.process",
      value: { stringValue: "control-plane" }
    })
    const spans = resourceSpans.scopeSpans[0].spans as Array<SpanJson>
    const byName = Object.fromEntries(spans.map((span) => [span.name, span]))
    const root = byName.root!
    const child = byName.child!
    const failing = byName.failing!
    expect(root.traceId).toMatch(/^[0-9a-f]{32}$/)
    expect(root.spanId).toMatch(/^[0-9a-f]{16}$/)
    expect(root.parentSpanId).toBeUndefined()
    for (const span of [child, failing]) {
      expect(span.traceId).toBe(root.traceId)
      expect(span.parentSpanId).toBe(root.spanId)
    }
    expect(root.kind).toBe(2)
    expect(child.kind).toBe(3)
    expect(BigInt(root.endTimeUnixNano)).toBeGreaterThanOrEqual(BigInt(child.endTimeUnixNano))
    expect(BigInt(child.startTimeUnixNano)).toBeGreaterThanOrEqual(BigInt(root.startTimeUnixNano))
    expect(child.attributes).toEqual([
      { key: "ratio", value: { doubleValue: 0.5 } },
      { key: "ok", value: { boolValue: true } }
    ])
    // a URL's query never leaves: it may hold an OAuth code
    expect(root.attributes).toEqual([
      { key: "url.full", value: { stringValue: "http://gw/api/v1/auth/github/callback" } },
      { key: "n", value: { intValue: "3" } }
    ])
    expect(JSON.stringify(body)).not.toContain("c0de")
    expect(failing.status).toEqual({ code: 2, message: "it broke" })
    expect(child.status).toEqual({ code: 0 })
    expect(exporter.stats).toMatchObject({ exported: 3, dropped: 0 })
  })

  it("sends only the traces its sampler keeps, and a remote parent's choice goes on in traceparent", async () => {
    const exporter = sampling({ name: "parentbased_always_off", parentBased: true, ratio: 0 })
    const kept = { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7" }
    const dropped = { traceId: "0af7651916cd43dd8448eb211c80319c", spanId: "b7ad6b7169203331" }
    const passedOn = await Effect.runPromise(
      Effect.gen(function* () {
        // a trace that begins here: not kept (always_off), its ids still passed on, flagged not sampled
        const own = yield* Trace.currentTraceparent.pipe(Effect.withSpan("own root", { root: true }))
        // a remote parent that was kept: its children are kept too; one that was not: neither are they
        const fromKept = yield* Trace.currentTraceparent.pipe(
          Effect.withSpan("kept child"),
          Effect.withParentSpan(Tracer.externalSpan({ ...kept, sampled: true }))
        )
        const fromDropped = yield* Trace.currentTraceparent.pipe(
          Effect.withSpan("dropped child"),
          Effect.withParentSpan(Tracer.externalSpan({ ...dropped, sampled: false }))
        )
        return { own, fromKept, fromDropped }
      }).pipe(Effect.withTracer(exporter.tracer))
    )
    await exporter.flush()
    expect(passedOn.own).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/)
    expect(passedOn.fromKept).toMatch(new RegExp(`^00-${kept.traceId}-[0-9a-f]{16}-01$`))
    expect(passedOn.fromDropped).toMatch(new RegExp(`^00-${dropped.traceId}-[0-9a-f]{16}-00$`))
    const sent = received.flatMap((r) => r.body.resourceSpans[0].scopeSpans[0].spans as Array<SpanJson>)
    expect(sent.map((span) => span.name)).toEqual(["kept child"])
    expect(sent[0]).toMatchObject({ traceId: kept.traceId, parentSpanId: kept.spanId })
    expect(exporter.stats).toMatchObject({ exported: 1, dropped: 0 })
  })

  it("makes no per-message span at all for a trace it does not keep, and passes that choice on", async () => {
    const exporter = sampling({ name: "parentbased_traceidratio", parentBased: true, ratio: 0 })
    const where = Effect.all({
      span: Effect.map(Effect.option(Effect.currentSpan), (span) => (span._tag === "Some" ? span.value.name : null)),
      traceparent: Trace.currentTraceparent
    })
    const kept = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    const dropped = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    const seen = await Effect.runPromise(
      Effect.all({
        // a new trace (none of the share is kept): no span, and an unsampled root passed on
        root: where.pipe(Trace.span("Actor.handleGroup", () => ({ root: true }))),
        // a message whose sender kept its trace: a span, in that trace; one whose sender did not: none, its context as it came
        fromKept: where.pipe(Trace.handling("Bus.handle", kept, () => ({}))),
        fromDropped: where.pipe(Trace.handling("Bus.handle", dropped, () => ({}))),
        // under the dropped one, a nested per-message span is not made either
        nested: where.pipe(
          Trace.span("Actor.apply", () => ({})),
          Trace.handling("Bus.handle", dropped, () => ({}))
        )
      }).pipe(Effect.withTracer(exporter.tracer))
    )
    await exporter.flush()
    expect(seen.root.span).toBeNull()
    expect(seen.root.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/)
    expect(seen.fromKept.span).toBe("Bus.handle")
    expect(seen.fromKept.traceparent).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/)
    expect(seen.fromDropped).toEqual({ span: null, traceparent: dropped })
    expect(seen.nested).toEqual({ span: null, traceparent: dropped })
    expect(exporter.stats).toMatchObject({ exported: 1 })
  })

  it("continues a trace from a remote parent, and drops and counts what a failing collector cannot take", async () => {
    received.length = 0
    status = 503
    const exporter = make({ url, headers: Redacted.make({}), service: "sam-test", role: "vm-agent" })
    const parent = { traceId: "0af7651916cd43dd8448eb211c80319c", spanId: "b7ad6b7169203331" }
    await Effect.runPromise(
      Effect.void.pipe(
        Effect.withSpan("remote child"),
        Effect.withParentSpan(Tracer.externalSpan({ ...parent, sampled: true })),
        Effect.withTracer(exporter.tracer)
      )
    )
    await exporter.flush()
    status = 200
    expect(received[0]?.body.resourceSpans[0].scopeSpans[0].spans[0]).toMatchObject({
      traceId: parent.traceId,
      parentSpanId: parent.spanId
    })
    expect(exporter.stats).toMatchObject({ exported: 0, dropped: 1, failures: 1 })
    expect(exporter.stats.lastError).toContain("503")
  })
})
