import { readdir, readFile, rm } from "node:fs/promises"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { join } from "node:path"
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
      const parsed = ExportRequest.safeParse(
        (() => {
          try {
            return JSON.parse(text)
          } catch {
            return undefined
          }
        })()
      )
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
      const json = (await response.json()) as { readonly id: string; readonly status: string }
      return { status: response.status, requestId: response.headers.get("x-request-id"), body: json }
    }
    const project = await api("POST", "/projects", { name: "traced", repoUrl: makeRepo(join(repoDir, "repo")) })
    expect(project.status).toBe(201)
    const created = await api("POST", `/projects/${project.body.id}/tasks`, { prompt: "say traced hello" })
    expect(created.status).toBe(201)
    const requestId = created.requestId ?? ""
    expect(requestId).toMatch(/^req_/)
    await eventually("the task completed", async () => {
      const task = await api("GET", `/tasks/${created.body.id}`)
      if (task.body.status === "failed") throw new Error(`the task failed: ${JSON.stringify(task.body)}`)
      return task.body.status === "completed" ? true : undefined
    })
    // a query string never leaves the gateway in a span (it may hold an OAuth code)
    expect((await api("GET", `/projects/${project.body.id}/tasks?limit=7`)).status).toBe(200)

    const submitPath = `/api/v1/projects/${project.body.id}/tasks`
    const request = await eventually("the gateway's span of the task's request", () =>
      collector.spans.find(
        (s) => s.kind === 2 && attribute(s, "http.request.method") === "POST" && attribute(s, "url.path") === submitPath
      )
    )
    expect(request.service).toBe("sam-control-plane")
    const inTrace = () => collector.spans.filter((s) => s.traceId === request.traceId)
    const find = (service: string, name: string, match: (s: Collected) => boolean = () => true) =>
      inTrace().find((s) => s.service === service && s.name === name && match(s))
    const typed = (type: string) => (s: Collected) =>
      attribute(s, "message.type") === type || attribute(s, "type") === type
    const submit = await eventually("the task actor's task.submit in the request's trace", () =>
      find("sam-control-plane", "Actor.apply", typed("task.submit"))
    )
    expect(attribute(submit, "correlation.id")).toBe(requestId)
    const start = await eventually("the node's session.start in the request's trace", () =>
      find("sam-vm-agent", "VmAgent.command", typed("session.start"))
    )
    // the node's span is the child of a control-plane span of the same trace: the outbox carried the context
    const parent = inTrace().find((s) => s.spanId === start.parentSpanId)
    expect(parent?.service).toBe("sam-control-plane")
    // the agent's output: reported by the node in the turn's trace, through the ingress, applied by the session actor
    const applied = await eventually("the session actor's report of the agent's output in the request's trace", () =>
      find("sam-control-plane", "Actor.apply", (s) => (attribute(s, "message.type") ?? "").startsWith("session.report"))
    )
    expect(attribute(applied, "correlation.id")).toBe(requestId)
    const lineage: Array<string> = []
    for (let at: Collected | undefined = applied; at !== undefined; ) {
      lineage.push(`${at.service}: ${at.name}`)
      const parentId: string | undefined = at.parentSpanId
      at = parentId === undefined ? undefined : inTrace().find((s) => s.spanId === parentId)
    }
    // every hop is there, each the child of the one before: nothing breaks the trace on the way
    expect(lineage[0]).toBe("sam-control-plane: Actor.apply")
    expect(lineage).toContain("sam-vm-agent: VmAgent.command")
    expect(lineage.some((hop) => /^sam-control-plane: (Bus\.handle|ReportIngress\.run)$/.test(hop))).toBe(true)
    expect(lineage.at(-1)).toBe("sam-control-plane: http.server POST")

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
