import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Domain, makeId, Nats, Trace } from "@sam/bus"
import { Effect, Layer, type Redacted } from "effect"
import { beforeAll } from "vitest"
import { natsAdmin, sqlLayer, useOwnNats, waitUntil } from "../../src/Env.js"
import {
  fakeNode,
  openSession,
  placement,
  sessionDatabase,
  sessionRow,
  snapshotOf,
  startControl,
  transcriptOf
} from "../../src/SessionHarness.js"

const { NodeProtocol } = Domain

// its report ingress takes every node's reports: on a nats-server of its own, not a neighbouring file's
useOwnNats()

let url: Redacted.Redacted<string>
beforeAll(async () => {
  url = await sessionDatabase()
})
const env = () => Layer.merge(natsAdmin("session-scoping"), sqlLayer(url))

const dropped = (entityId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* sql<{ nodeId: string; type: string; reason: string; subject: string | null; messageId: string }>`
      SELECT node_id, type, reason, subject, message_id FROM dropped_reports WHERE entity_id = ${entityId} ORDER BY id`
  })

describe("callback scoping: a node reports only on what the ledger places on it", () => {
  it.scopedLive(
    "a report from node B naming node A's session changes nothing and is audited",
    () =>
      Effect.gen(function* () {
        const { session } = yield* startControl(url)
        const { projectId, place } = yield* placement
        const a = yield* place()
        const b = yield* place()
        const nodeA = yield* fakeNode(a.nodeId)
        const nodeB = yield* fakeNode(b.nodeId)
        const sessionId = makeId("sess")
        yield* openSession(session, {
          projectId,
          workspaceId: a.workspaceId,
          nodeId: a.nodeId,
          mode: "task",
          sessionId
        })
        const before = yield* snapshotOf(sessionId)
        // Node B (its own credentials, its own subject) claims A's session said things and went idle.
        const forgedEvent = nodeB.event(sessionId, 1, { type: "text", text: "not from A" })
        const forgedIdle = nodeB.activity(sessionId, { activity: "idle", promptEpoch: 1, stopReason: "end_turn" })
        yield* nodeB.publish(forgedEvent, sessionId)
        yield* nodeB.publish(forgedIdle, sessionId)
        const audit = yield* waitUntil(
          "both forged reports audited",
          dropped(sessionId).pipe(Effect.map((rows) => (rows.length >= 2 ? rows : undefined)))
        )
        expect(audit).toEqual([
          expect.objectContaining({
            nodeId: b.nodeId,
            type: "session.event-reported",
            reason: "session_not_on_node",
            messageId: forgedEvent.id
          }),
          expect.objectContaining({
            nodeId: b.nodeId,
            type: "session.activity-reported",
            reason: "session_not_on_node",
            messageId: forgedIdle.id
          })
        ])
        expect(audit[0]?.subject).toBe(`sam.agent.${b.nodeId}.rpt.session.event-reported.${sessionId}`)
        expect(yield* transcriptOf(sessionId)).toEqual([])
        expect(yield* snapshotOf(sessionId)).toEqual(before)
        expect(yield* sessionRow(sessionId)).toMatchObject({ status: "active", lastSeq: "0" })

        // The real node's report still applies.
        yield* nodeA.publish(nodeA.event(sessionId, 1, { type: "text", text: "from A" }), sessionId)
        const rows = yield* waitUntil(
          "A's event persisted",
          transcriptOf(sessionId).pipe(Effect.map((rows) => (rows.length === 1 ? rows : undefined)))
        )
        expect(rows[0]).toMatchObject({ seq: 1, payload: { text: "from A" } })

        // A report for a session no ledger knows is dropped too.
        const ghost = makeId("sess")
        yield* nodeA.publish(nodeA.event(ghost, 1, { type: "text", text: "ghost" }), ghost)
        const ghostAudit = yield* waitUntil(
          "the unknown session audited",
          dropped(ghost).pipe(Effect.map((rows) => (rows.length >= 1 ? rows : undefined)))
        )
        expect(ghostAudit[0]).toMatchObject({ nodeId: a.nodeId, reason: "unknown_session" })
      }).pipe(Effect.provide(env())),
    60_000
  )

  it.scopedLive(
    "a body naming another node, or a subject naming another entity, is a forgery: dropped and audited",
    () =>
      Effect.gen(function* () {
        const { session } = yield* startControl(url)
        const { projectId, place } = yield* placement
        const a = yield* place()
        const b = yield* place()
        const nodeB = yield* fakeNode(b.nodeId)
        const sessionId = makeId("sess")
        yield* openSession(session, {
          projectId,
          workspaceId: a.workspaceId,
          nodeId: a.nodeId,
          mode: "task",
          sessionId
        })
        // B says, on its own subject, that it is A being ready.
        const ready = NodeProtocol.NodeReady.make({
          nodeId: a.nodeId,
          version: "1",
          capabilities: { docker: false, hostRuntime: true, agents: ["demo"] }
        })
        yield* nodeB.publish(ready)
        // B's subject names one of its own sessions while the body names A's.
        const ownSession = makeId("sess")
        const mismatched = nodeB.event(sessionId, 1, { type: "text", text: "sneaky" })
        yield* nodeB.publish(mismatched, ownSession)
        const sql = yield* SqlClient.SqlClient
        const rows = yield* waitUntil(
          "both forgeries audited",
          sql<{ type: string; reason: string; messageId: string; subject: string }>`
          SELECT type, reason, message_id, subject FROM dropped_reports WHERE node_id = ${b.nodeId} ORDER BY id`.pipe(
            Effect.map((rows) => (rows.length >= 2 ? rows : undefined))
          )
        )
        // Reports about different entities are handled side by side: find each by its id, in any order.
        const readyRow = rows.find((row) => row.messageId === ready.id)
        const eventRow = rows.find((row) => row.messageId === mismatched.id)
        expect(readyRow).toMatchObject({ type: "node.ready" })
        expect(readyRow?.reason).toContain(`body names node ${a.nodeId}`)
        expect(eventRow).toMatchObject({ type: "session.event-reported" })
        expect(eventRow?.reason).toContain(`subject names ${ownSession}`)
        expect(yield* transcriptOf(sessionId)).toEqual([])
      }).pipe(Effect.provide(env())),
    60_000
  )

  it.scopedLive(
    "a malformed report is audited and the ingress carries on",
    () =>
      Effect.gen(function* () {
        const { session } = yield* startControl(url)
        const { projectId, place } = yield* placement
        const a = yield* place()
        const node = yield* fakeNode(a.nodeId)
        const sessionId = makeId("sess")
        yield* openSession(session, {
          projectId,
          workspaceId: a.workspaceId,
          nodeId: a.nodeId,
          mode: "task",
          sessionId
        })
        yield* node.publishBytes("session.event-reported", "{not json")
        yield* node.publishBytes(
          "session.event-reported",
          JSON.stringify({ ...node.event(sessionId, 1, { type: "text", text: "x" }), body: { sessionId } })
        )
        yield* node.publishBytes(
          "nonsense",
          JSON.stringify({ id: makeId("msg"), type: "nonsense", at: new Date().toISOString(), body: {} })
        )
        yield* node.publish(node.event(sessionId, 1, { type: "text", text: "fine" }), sessionId)
        yield* waitUntil(
          "the good report applied",
          transcriptOf(sessionId).pipe(Effect.map((rows) => (rows.length === 1 ? rows : undefined)))
        )
        const sql = yield* SqlClient.SqlClient
        const rows = yield* waitUntil(
          "the malformed reports audited",
          sql<{ type: string; reason: string }>`
          SELECT type, reason FROM dropped_reports WHERE node_id = ${a.nodeId} ORDER BY id`.pipe(
            Effect.map((rows) => (rows.length >= 3 ? rows : undefined))
          )
        )
        expect(rows.map((r) => r.type)).toEqual(["not-json", "bad-body", "unknown-type"])
        for (const row of rows) expect(row.reason).toMatch(/^malformed: /)
        expect((yield* transcriptOf(sessionId))[0]).toMatchObject({ seq: 1, payload: { text: "fine" } })
      }).pipe(Effect.provide(env())),
    60_000
  )

  it.scopedLive(
    "what a report's command carries on: its trace context and correlation id, for each report of a session",
    () =>
      Effect.gen(function* () {
        const { session } = yield* startControl(url)
        const { projectId, place } = yield* placement
        const a = yield* place()
        const nodeA = yield* fakeNode(a.nodeId)
        const sessionId = makeId("sess")
        yield* openSession(session, {
          projectId,
          workspaceId: a.workspaceId,
          nodeId: a.nodeId,
          mode: "conversation",
          sessionId
        })
        const { nc } = yield* Nats
        const forwards: Array<{ traceparent: string | undefined; correlationId: unknown; type: unknown }> = []
        const sub = nc.subscribe(`sam.cmd.${session.name}.*.${sessionId}`, {
          callback: (_error, msg) => {
            const envelope = JSON.parse(new TextDecoder().decode(msg.data)) as {
              correlationId?: unknown
              type?: unknown
            }
            forwards.push({
              traceparent: msg.headers?.get("traceparent"),
              correlationId: envelope.correlationId,
              type: envelope.type
            })
          }
        })
        yield* Effect.addFinalizer(() => Effect.sync(() => sub.unsubscribe()))
        yield* Effect.promise(() => nc.flush())
        // The node's turn: its reports name the request that started it and carry its trace context. The first is
        // checked against the ledger; the ones after it go on without (issue 12), and must carry the same.
        const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        for (const [i, text] of ["one", "two", "three"].entries()) {
          const report = NodeProtocol.SessionEvent.make(
            { sessionId: sessionId as never, nodeSeq: i + 1, promptEpoch: 0, event: { type: "text", text } },
            { correlationId: "req_scopingTurn" }
          )
          yield* nodeA.publish(report, sessionId).pipe(Trace.continueFrom(traceparent))
          yield* waitUntil(
            `report ${text} in the transcript`,
            transcriptOf(sessionId).pipe(Effect.map((rows) => (rows.length > i ? rows : undefined)))
          )
        }
        expect(forwards.length).toBe(3)
        for (const forward of forwards) {
          expect(forward).toEqual({ traceparent, correlationId: "req_scopingTurn", type: "session.report" })
        }
      }).pipe(Effect.provide(env())),
    60_000
  )
})
