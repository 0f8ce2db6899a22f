import { readdir, readFile, rm } from "node:fs/promises"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { join } from "node:path"
import { safeParseJson } from "@sam/bus"
import { afterAll, describe, expect, it } from "vitest"
import { z } from "zod"
import { type SamUp, startSamUp } from "../../faults/SamUp.js"
import { makeRepo } from "../../src/Repo.js"
import { freePort, tempDir } from "../../src/TestStack.js"

/**
 * A stand-in for an OpenTelemetry collector (none can run here): it takes OTLP/HTTP JSON on `/v1/traces` as the
 * specification shapes it (ids in hex, 64-bit times as decimal strings), answers 401 without the API key it was
 * given and 400 to a body that is not OTLP, and keeps the spans with their resource's service.
 */
const AnyValue = z.object({
  stringValue: z.string().optional(),
  boolValue: z.boolean().optional(),
  intValue: z
    .string()
    .regex(/^-?[0-9]+$/)
    .optional(),
  doubleValue: z.number().optional(),
  arrayValue: z.object({ values: z.array(z.unknown()) }).optional()
})
const KeyValue = z.object({ key: z.string().min(1), value: AnyValue })
const Span = z.object({
  traceId: z.string().regex(/^[0-9a-f]{32}$/),
  spanId: z.string().regex(/^[0-9a-f]{16}$/),
  parentSpanId: z
    .string()
    .regex(/^[0-9a-f]{16}$/)
    .optional(),
  name: z.string().min(1),
  kind: z.number().int().min(0).max(5),
  startTimeUnixNano: z.string().regex(/^[0-9]+$/),
  endTimeUnixNano: z.string().regex(/^[0-9]+$/),
  attributes: z.array(KeyValue),
  status: z.object({ code: z.number().int().min(0).max(2), message: z.string().optional() })
})
const ExportRequest = z.object({
  resourceSpans: z.array(
    z.object({
      resource: z.object({ attributes: z.array(KeyValue) }),
      scopeSpans: z.array(z.object({ scope: z.object({ name: z.string() }), spans: z.array(Span) }))
    })
  )
})
type Collected = z.infer<typeof Span> & { readonly service: string }

const startCollector = async (apiKey: string) => {
  const spans: Array<Collected> = []
  const refused: Array<string> = []
  const server = createServer((request, response) => {
    let text = ""
    request.on("data", (chunk: Buffer) => (text += chunk))
    request.on("end", () => {
      if (request.method !== "POST" || request.url !== "/v1/traces") return response.writeHead(404).end()
      if (request.headers.authorization !== apiKey) {
        refused.push("unauthorized")
        return response.writeHead(401).end()
      }
      const parsed = safeParseJson(ExportRequest, text)
      if (!parsed.success || request.headers["content-type"] !== "application/json") {
        refused.push(parsed.success ? "content-type" : parsed.error.message)
        return response.writeHead(400).end()
      }
      for (const resource of parsed.data.resourceSpans) {
        const service =
          resource.resource.attributes.find((a) => a.key === "service.name")?.value.stringValue ?? "(none)"
        for (const scope of resource.scopeSpans) for (const span of scope.spans) spans.push({ ...span, service })
      }
      response.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  await new Promise<void>((listening) => server.listen(0, "127.0.0.1", listening))
  return {
    port: (server.address() as AddressInfo).port,
    spans,
    refused,
    close: () => new Promise<void>((closed) => server.close(() => closed()))
  }
}

const attribute = (span: Collected, key: string) => {
  const value = span.attributes.find((a) => a.key === key)?.value
  return value?.stringValue ?? value?.intValue
}

const eventually = async <A>(what: string, check: () => A | undefined | Promise<A | undefined>, ms = 60_000) => {
  const until = Date.now() + ms
  for (;;) {
    const found = await check()
    if (found !== undefined) return found
    if (Date.now() > until) throw new Error(`not in ${ms / 1000} s: ${what}`)
    await new Promise((next) => setTimeout(next, 100))
  }
}

describe("./sam up with an OpenTelemetry collector", async () => {
  const dataDir = await tempDir("sam-up-otel-")
  const repoDir = await tempDir("sam-repo-")
  const apiKey = "Bearer otel-k3y-not-for-logs"
  const collector = await startCollector(apiKey)
  const gatewayPort = await freePort()
  const gateway = `http://127.0.0.1:${gatewayPort}`
  const env = {
    SAM_DATA_DIR: dataDir,
    SAM_NATS_PORT: String(await freePort()),
    SAM_PG_PORT: String(await freePort()),
    SAM_GATEWAY_PORT: String(gatewayPort),
    SAM_NODE_RUNTIME: "host",
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector.port}`,
    OTEL_EXPORTER_OTLP_HEADERS: `authorization=${encodeURIComponent(apiKey)}`
  }
  let up: SamUp | undefined
  afterAll(async () => {
    if (up !== undefined && up.child.exitCode === null && up.child.signalCode === null) {
      up.child.kill("SIGINT")
      await Promise.race([up.exited, new Promise((done) => setTimeout(done, 15_000))])
    }
    await collector.close()
    await rm(dataDir, { recursive: true, force: true })
    await rm(repoDir, { recursive: true, force: true })
  })

  it("follows a task's request in one trace: the gateway's request, the actors, the node's commands and the agent's reports", async () => {
    up = await startSamUp(env)
    expect(up.output()).toContain(
      `✓ tracing: spans of sam-control-plane and its vm-agents to http://127.0.0.1:${collector.port}/v1/traces (OTLP/HTTP JSON)`
    )
    const token = (await readFile(join(dataDir, "cli.token"), "utf8")).trim()
    const api = async (method: string, path: string, body?: unknown) => {
      const response = await fetch(`${gateway}/api/v1${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" })
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) })
      })
      const json = (await response.json()) as {
        readonly id: string
        readonly executionStep?: string | null
        readonly sessionId?: string | null
      }
      return { status: response.status, requestId: response.headers.get("x-request-id") ?? "", body: json }
    }
    const project = await api("POST", "/projects", { name: "traced", repoUrl: makeRepo(join(repoDir, "repo")) })
    expect(project.status).toBe(201)
    const created = await api("POST", `/projects/${project.body.id}/tasks`, {
      prompt: "say traced hello",
      mode: "conversation"
    })
    expect(created.status).toBe(201)
    expect(created.requestId).toMatch(/^req_/)
    const sessionId = await eventually("the task awaits a follow-up", async () => {
      const task = await api("GET", `/tasks/${created.body.id}`)
      return task.body.executionStep === "awaiting_followup" ? (task.body.sessionId ?? undefined) : undefined
    })
    // a query string never leaves the gateway in a span (it may hold an OAuth code)
    expect((await api("GET", `/projects/${project.body.id}/tasks?limit=7`)).status).toBe(200)

    /**
     * The request's trace, from the gateway's span of `POST <path>`: the session actor's `Actor.apply` of the agent's
     * output carries the request's correlation id, and its chain of parents goes back, unbroken, through the
     * ingress and the node's command to the HTTP request.
     */
    const followed = async (path: string, requestId: string, nodeCommand: string) => {
      const request = await eventually(`the gateway's span of POST ${path}`, () =>
        collector.spans.find(
          (s) => s.kind === 2 && attribute(s, "http.request.method") === "POST" && attribute(s, "url.path") === path
        )
      )
      expect(request.service).toBe("sam-control-plane")
      const inTrace = () => collector.spans.filter((s) => s.traceId === request.traceId)
      const lineageOf = (span: Collected) => {
        const lineage: Array<string> = []
        for (let at: Collected | undefined = span; at !== undefined; ) {
          const type = attribute(at, "message.type") ?? attribute(at, "type")
          lineage.push(`${at.service}: ${at.name}${type === undefined ? "" : ` ${type}`}`)
          const parentId: string | undefined = at.parentSpanId
          at = parentId === undefined ? undefined : inTrace().find((s) => s.spanId === parentId)
        }
        return lineage
      }
      // A span is exported once it ends, and the node's command ends after the reports it caused: wait for a report
      // whose chain reaches the request.
      const { applied, lineage } = await eventually(
        `the agent's output applied in the trace of POST ${path}, its chain back to the request`,
        () =>
          inTrace()
            .filter(
              (s) => s.name === "Actor.apply" && (attribute(s, "message.type") ?? "").startsWith("session.report")
            )
            .map((span) => ({ applied: span, lineage: lineageOf(span) }))
            .find(({ lineage }) => lineage.at(-1) === "sam-control-plane: http.server POST")
      )
      expect(attribute(applied, "correlation.id")).toBe(requestId)
      // every hop is there, each the child of the one before: nothing breaks the trace on the way
      expect(lineage[0]).toMatch(/^sam-control-plane: Actor\.apply session\.report/)
      expect(lineage).toContain(`sam-vm-agent: VmAgent.command ${nodeCommand}`)
      expect(lineage.some((hop) => /^sam-control-plane: (Bus\.handle|ReportIngress\.run)( |$)/.test(hop))).toBe(true)
      expect(lineage.at(-1)).toBe("sam-control-plane: http.server POST")
      return { traceId: request.traceId, lineage }
    }
    const first = await followed(`/api/v1/projects/${project.body.id}/tasks`, created.requestId, "session.start")
    const submit = collector.spans.find(
      (s) => s.traceId === first.traceId && s.name === "Actor.apply" && attribute(s, "message.type") === "task.submit"
    )
    expect(submit && attribute(submit, "correlation.id")).toBe(created.requestId)
    // the node's work was asked for by the actors through the outbox: its command's parent is an actor's span
    expect(first.lineage).toContain("sam-control-plane: Actor.apply session.open")

    // A follow-up is a request, and a trace, of its own, down to the agent's answer
    const prompted = await api("POST", `/sessions/${sessionId}/prompt`, { prompt: "say traced follow-up" })
    expect(prompted.status).toBe(202)
    const second = await followed(`/api/v1/sessions/${sessionId}/prompt`, prompted.requestId, "session.prompt")
    expect(second.traceId).not.toBe(first.traceId)

    // The default sampler follows a caller's choice, in every process: a request whose caller did not sample its
    // trace (`traceparent` flagged 00) is exported by none of them, and one the caller sampled is, under its trace id
    const promptAs = (text: string, traceparent: string) =>
      fetch(`${gateway}/api/v1/sessions/${sessionId}/prompt`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json", traceparent },
        body: JSON.stringify({ prompt: text })
      }).then((response) => response.status)
    const unsampled = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e"
    const sampled = "0ddba11ce0ddba11ce0ddba11ce0ddba"
    expect(await promptAs("say not traced", `00-${unsampled}-00f067aa0ba902b7-00`)).toBe(202)
    expect(await promptAs("say traced by the caller", `00-${sampled}-00f067aa0ba902b7-01`)).toBe(202)
    // the caller's traced prompt went all the way: the node's command and the agent's output applied, in its trace
    await eventually("the caller's sampled trace reaches the node and back", () => {
      const trace = collector.spans.filter((s) => s.traceId === sampled)
      const node = trace.some((s) => s.service === "sam-vm-agent" && s.name === "VmAgent.command")
      const output = trace.some(
        (s) => s.name === "Actor.apply" && (attribute(s, "message.type") ?? "").startsWith("session.report")
      )
      return node && output ? true : undefined
    })
    // The unsampled prompt's turn ran first (a session's prompts run in order), so each process ended its spans before
    // the sampled trace's, and an exporter sends what ended in the order it ended: had any of them been sent, the
    // collector would have it by now.
    expect(collector.spans.filter((s) => s.traceId === unsampled)).toEqual([])

    expect(collector.refused).toEqual([])
    const everything = JSON.stringify(collector.spans)
    expect(everything).not.toContain("limit=7")
    expect(everything).not.toContain(token)
    expect(everything).not.toContain((await readFile(join(dataDir, "owner-password"), "utf8")).trim())

    up.child.kill("SIGINT")
    expect(await up.exited).toBe(0)
    // the collector's key is in no log
    expect(up.output()).not.toContain("otel-k3y")
    const nodes = await readdir(join(dataDir, "nodes"))
    expect(nodes.length).toBeGreaterThan(0)
    for (const node of nodes)
      expect(await readFile(join(dataDir, "nodes", node, "vm-agent.log"), "utf8")).not.toContain("otel-k3y")
  })
})
