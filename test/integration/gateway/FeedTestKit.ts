import { createHash } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { Actors, ControlPlane } from "@sam/actors"
import { type Api, Domain, makeId, Publish, Subjects } from "@sam/bus"
import { Gateway } from "@sam/gateway"
import { framesOf, nodeWebSocket } from "@sam/gateway/client"
import { ConfigProvider, Effect } from "effect"
import type { TestUser } from "../../src/index.js"

const { ControlProtocol, NodeProtocol } = Domain

/**
 * A project of `owner` with a node of theirs and a workspace placed on it (as the task path leaves them) and
 * a session opened through the session actor. The node is this test, publishing reports on the
 * node's subject: the ingress, the session actor, Postgres and NATS on the way are the real ones.
 */
export const seedSession = (owner: TestUser) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const projectId = makeId("proj")
    const nodeId = makeId("node")
    const workspaceId = makeId("ws")
    const sessionId = makeId("sess")
    yield* sql`INSERT INTO projects (id, owner_id, name, repo_url) VALUES (${projectId}, ${owner.userId}, 'feed', 'file:///f')`
    yield* sql`INSERT INTO project_members (project_id, user_id, role) VALUES (${projectId}, ${owner.userId}, 'owner')`
    yield* sql`INSERT INTO nodes (id, provider, status, owner_id) VALUES (${nodeId}, 'local', 'running', ${owner.userId})`
    yield* sql`INSERT INTO workspaces (id, project_id, node_id, status) VALUES (${workspaceId}, ${projectId}, ${nodeId}, 'running')`
    yield* Actors.ask(
      ControlPlane.SessionRef,
      sessionId,
      ControlProtocol.SessionOpen.make({
        sessionId,
        projectId,
        workspaceId,
        nodeId,
        agent: "demo",
        mode: "conversation",
        prompt: "feed"
      })
    )
    let nodeSeq = 0
    /**
     * report `count` text events, one report after another as a node does (runs of up to `run` events in
     * a `session.events` report, as a busy agent's vm-agent sends them; 1: one `session.event` each);
     * `size` characters of text each
     */
    const produce = (count: number, size = 60, run = 1) =>
      Effect.forEach(
        Array.from({ length: Math.ceil(count / run) }, (_, i) =>
          Array.from({ length: Math.min(run, count - i * run) }, () => ++nodeSeq)
        ),
        (ns) =>
          ns.length === 1
            ? Publish.publish(
                Subjects.agentReport(nodeId, "session.event-reported", sessionId),
                NodeProtocol.SessionEvent.make({
                  sessionId,
                  nodeSeq: ns[0]!,
                  promptEpoch: 1,
                  event: { type: "text", text: `${ns[0]} `.padEnd(size, "x") }
                })
              )
            : Publish.publish(
                Subjects.agentReport(nodeId, "session.events-reported", sessionId),
                NodeProtocol.SessionEvents.make({
                  sessionId,
                  promptEpoch: 1,
                  events: ns.map((n) => ({ nodeSeq: n, event: { type: "text", text: `${n} `.padEnd(size, "x") } }))
                })
              ),
        { discard: true }
      )
    /** report the agent's activity: the actor writes the snapshot and publishes `session.activity` */
    const activity = (value: "prompting" | "idle") =>
      Publish.publish(
        Subjects.agentReport(nodeId, "session.activity-reported", sessionId),
        NodeProtocol.SessionActivity.make({
          sessionId,
          activity: value,
          promptEpoch: 1,
          observedAt: new Date().toISOString()
        })
      )
    const lastSeq = sql<{ lastSeq: string }>`SELECT last_seq FROM sessions WHERE id = ${sessionId}`.pipe(
      Effect.map((rows) => Number(rows[0]?.lastSeq ?? 0))
    )
    return { projectId, nodeId, workspaceId, sessionId, produce, activity, lastSeq }
  })

/** JSON with sorted keys: the transcript's jsonb and a live event's JSON order keys differently. */
export const canonical = (value: unknown): string =>
  value === null || typeof value !== "object"
    ? JSON.stringify(value)
    : Array.isArray(value)
      ? `[${value.map(canonical).join(",")}]`
      : `{${Object.keys(value)
          .sort()
          .map((key) => `${JSON.stringify(key)}:${canonical((value as Record<string, unknown>)[key])}`)
          .join(",")}}`

/** A digest of (seq, event) in order, to compare what a client saw with the transcript. */
export const digest = () => {
  const hash = createHash("sha256")
  return {
    add: (seq: number, event: unknown) => hash.update(`${seq} ${canonical(event)}\n`),
    hex: () => hash.digest("hex")
  }
}

/** The digest of the session's transcript in Postgres after `afterSeq`, and its length. */
export const transcriptDigest = (sessionId: string, afterSeq = 0) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ seq: string; payload: unknown }>`
      SELECT seq, payload FROM session_events WHERE session_id = ${sessionId} AND seq > ${afterSeq} ORDER BY seq`
      .withoutTransform
    const d = digest()
    for (const row of rows) d.add(Number(row.seq), row.payload)
    return { count: rows.length, hex: d.hex() }
  })

/** A gateway of the test's own with tighter feed limits (`SAM_FEED_*`), in the current scope. */
export const startGateway = (feed: Record<string, number>) =>
  Gateway.start({ host: "127.0.0.1", port: 0 }).pipe(
    Effect.map((g) => g.url),
    Effect.withConfigProvider(
      ConfigProvider.fromMap(new Map(Object.entries(feed).map(([k, v]) => [`SAM_FEED_${k}`, String(v)]))).pipe(
        ConfigProvider.orElse(() => ConfigProvider.fromEnv())
      )
    )
  )

export type Frame = Api.ServerFrame

export interface RawClient {
  /** the frames as a consumer takes them: a `session.events` frame is its entries' `session.event` frames */
  readonly frames: Array<Frame>
  /** the frames as they came over the wire */
  readonly wire: Array<Frame>
  readonly socket: Awaited<ReturnType<typeof nodeWebSocket>>["prototype"]
  readonly closed: Promise<{ readonly code: number; readonly reason: string }>
  /** the close, once it came */
  readonly closedWith: () => { readonly code: number; readonly reason: string } | undefined
  readonly send: (frame: unknown) => void
  readonly of: <T extends Frame["type"]>(type: T) => Array<Api.ServerFrameOf<T>>
}

/**
 * A plain WebSocket to the feed, keeping every frame, for tests that look at the wire: with a bearer
 * header, or `?access_token=` with `query`. Resolves once open, or with the HTTP status it was refused with.
 */
export const rawClient = (baseUrl: string, token: string | undefined, options: { readonly query?: boolean } = {}) =>
  Effect.promise(async (): Promise<RawClient | { readonly refused: number; readonly body: string }> => {
    const WS = await nodeWebSocket()
    const url = `${baseUrl.replace(/^http/, "ws")}/api/v1/feed${options.query && token ? `?access_token=${token}` : ""}`
    const headers = token === undefined || options.query ? {} : { authorization: `Bearer ${token}` }
    const socket = new WS(url, { headers })
    const frames: Array<Frame> = []
    const wire: Array<Frame> = []
    socket.on("message", (data) => {
      const frame = JSON.parse(String(data)) as Frame
      wire.push(frame)
      frames.push(...framesOf(frame))
    })
    let closedWith: { code: number; reason: string } | undefined
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      socket.on("close", (code, reason) => {
        closedWith = { code, reason: reason.toString() }
        resolve(closedWith)
      })
    )
    socket.on("error", () => {})
    return new Promise((resolve) => {
      socket.on("open", () =>
        resolve({
          frames,
          wire,
          socket,
          closed,
          closedWith: () => closedWith,
          send: (frame) => socket.send(typeof frame === "string" ? frame : JSON.stringify(frame)),
          of: (type) => frames.filter((f) => f.type === type) as never
        })
      )
      socket.on("unexpected-response", (_req, res) => {
        let body = ""
        res.on("data", (chunk: Buffer) => {
          body += chunk.toString()
        })
        res.on("end", () => resolve({ refused: res.statusCode ?? 0, body }))
      })
    })
  })

export const isOpen = (client: RawClient | { readonly refused: number; readonly body: string }): client is RawClient =>
  "frames" in client
