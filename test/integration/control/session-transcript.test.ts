import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Actor, Actors, SessionActor } from "@sam/actors"
import { Domain, type Envelope, encode, makeId, Nats } from "@sam/bus"
import { Effect, Layer, type Redacted } from "effect"
import { beforeAll } from "vitest"
import { makeStore } from "../../../actors/src/internal/Store.js"
import { natsAdmin, sqlLayer, useOwnNats, waitUntil } from "../../src/Env.js"
import {
  collect,
  fakeNode,
  openSession,
  placement,
  sessionDatabase,
  snapshotOf,
  startControl,
  transcriptOf
} from "../../src/SessionHarness.js"

const { ControlProtocol } = Domain

// its report ingress takes every node's reports: on a nats-server of its own, not a neighbouring file's
useOwnNats()

let url: Redacted.Redacted<string>
beforeAll(async () => {
  url = await sessionDatabase()
})
const env = () => Layer.merge(natsAdmin("session-transcript"), sqlLayer(url))

/** An open session on a node whose reports no ingress takes yet: the test starts the ones it needs. */
const sessionWithoutIngress = Effect.gen(function* () {
  const { session, ingress, stopFirstIngress } = yield* startControl(url)
  yield* stopFirstIngress
  const { projectId, place } = yield* placement
  const { nodeId, workspaceId } = yield* place()
  const node = yield* fakeNode(nodeId)
  const sessionId = makeId("sess")
  yield* openSession(session, { projectId, workspaceId, nodeId, sessionId })
  return { session, ingress, node, sessionId }
})

/**
 * The runtime's group commit on shard 0 of epoch 1, driven directly so that the commands given at once surely share
 * one transaction.
 */
const committer = (store: ReturnType<typeof makeStore>, session: SessionActor.SessionKind) => {
  let sequence = 0
  return (...commands: ReadonlyArray<{ readonly sessionId: string; readonly envelope: Envelope }>) =>
    store.commitGroup(
      commands.map(({ sessionId, envelope }) => ({
        kind: session,
        shard: 0,
        epoch: 1,
        id: sessionId,
        envelope,
        context: {
          kind: session.name,
          id: sessionId,
          subject: Actor.subjectOf(session, sessionId),
          streamSequence: ++sequence,
          attempt: 1
        }
      }))
    )
}

/** A demo agent's conversation, prompted "hello", opened on a node. */
const conversationOpen = (ids: { sessionId: string; projectId: string; workspaceId: string; nodeId: string }) =>
  ControlProtocol.SessionOpen.make({
    sessionId: ids.sessionId as never,
    projectId: ids.projectId as never,
    workspaceId: ids.workspaceId as never,
    nodeId: ids.nodeId as never,
    agent: "demo",
    prompt: "hello",
    mode: "conversation"
  })

describe("session actor: transcript and activity", () => {
  /** The transcript entries' seqs in the `session.event`s and `session.event-batch`es published, in order. */
  const publishedSeqs = (published: ReadonlyArray<{ envelope: { type: string; body: unknown } }>) =>
    published.flatMap(({ envelope }) =>
      envelope.type === "session.event"
        ? [(envelope.body as { seq: number }).seq]
        : envelope.type === "session.event-batch"
          ? (envelope.body as { entries: Array<{ seq: number }> }).entries.map((e) => e.seq)
          : []
    )

  it.scopedLive(
    "events are persisted with seq 1..n in order, once, though reports are redelivered and published twice",
    () =>
      Effect.gen(function* () {
        // Every third command's first delivery is left unacknowledged: the server redelivers it.
        const outcomes: Array<"applied" | "duplicate"> = []
        const { session } = yield* startControl(url, {
          runtime: {
            ackWait: "1 second",
            withholdAck: (seq, deliveries) => deliveries === 1 && seq % 3 === 0,
            onApplied: (applied) => void outcomes.push(applied.outcome)
          }
        })
        const { projectId, place } = yield* placement
        const { nodeId, workspaceId } = yield* place()
        const node = yield* fakeNode(nodeId)
        const sessionId = makeId("sess")
        const published = yield* collect(`sam.evt.${projectId}.session.${sessionId}.session.*`)
        const { reply: opened } = yield* openSession(session, {
          projectId,
          workspaceId,
          nodeId,
          mode: "conversation",
          sessionId
        })
        expect(opened).toMatchObject({ outcome: "applied", reply: { ok: true, promptEpoch: 1 } })
        const start = yield* waitUntil(
          "the node received session.start",
          Effect.sync(() => node.commands.find((c) => c.type === "session.start"))
        )
        expect(start.body).toMatchObject({ sessionId, workspaceId, agent: "demo", prompt: "hello" })
        expect(yield* snapshotOf(sessionId)).toMatchObject({ activity: "prompting", promptEpoch: 1, lastSeq: 0 })

        const N = 40
        const events = Array.from({ length: N }, (_, i) =>
          node.event(sessionId, 1, { type: "text", text: `chunk ${i}` })
        )
        yield* node.publish(node.activity(sessionId, { activity: "prompting", promptEpoch: 1 }), sessionId)
        for (const [i, event] of events.entries()) {
          yield* node.publish(event, sessionId)
          if (i % 4 === 0) yield* node.publish(event, sessionId) // same Nats-Msg-Id: the stream drops it
          if (i % 5 === 0) yield* node.publishRaw(event, sessionId) // stored twice: the command id dedupes it
        }
        const rows = yield* waitUntil(
          "the transcript is complete",
          transcriptOf(sessionId).pipe(Effect.map((rows) => (rows.length >= N ? rows : undefined))),
          { timeout: "30 seconds" }
        )
        // The same command published straight to SAM_CMD without a message id: only the inbox stops it. (Sent once
        // its report is in: sent while the ingress still forwards, it would be the report's first copy, ahead of
        // the reports before it. A copy behind the run that holds it is the group-commit test below.)
        const { js } = yield* Nats
        const again = ControlProtocol.SessionReport.make(
          { nodeId, report: { type: "session.event-reported", body: events[7]!.body } },
          { id: events[7]!.id }
        )
        yield* Effect.promise(() => js.publish(Actor.subjectOf(session, sessionId), encode(again)))
        yield* node.publish(
          node.activity(sessionId, { activity: "idle", promptEpoch: 1, stopReason: "end_turn" }),
          sessionId
        )
        yield* waitUntil(
          "the snapshot is idle",
          snapshotOf(sessionId).pipe(Effect.map((s) => (s?.activity === "idle" ? s : undefined)))
        )
        const final = yield* transcriptOf(sessionId)
        expect(final.length).toBe(N)
        expect(final.map((r) => r.seq)).toEqual(Array.from({ length: N }, (_, i) => i + 1))
        expect(final.map((r) => r.payload.text)).toEqual(events.map((e) => e.body.event.text))
        expect(rows.map((r) => r.nodeSeq)).toEqual(events.map((e) => e.body.nodeSeq))
        expect(yield* snapshotOf(sessionId)).toMatchObject({ activity: "idle", lastSeq: N, reason: "completed" })
        // Redeliveries and repeats did reach the actor, and its inbox dropped them.
        expect(outcomes.filter((o) => o === "duplicate").length).toBeGreaterThan(0)
        // Each entry was published once as a domain event, in seq order.
        const seqs = yield* waitUntil(
          "every session.event published",
          Effect.sync(() => {
            const seqs = publishedSeqs(published)
            return seqs.length >= N ? seqs : undefined
          })
        )
        expect(new Set(seqs).size).toBe(N)
        expect([...seqs].sort((a, b) => a - b)).toEqual(final.map((r) => r.seq))
      }).pipe(Effect.provide(env())),
    60_000
  )

  it.scopedLive(
    "the snapshot goes prompting → idle, and an older activity report never overwrites a newer one",
    () =>
      Effect.gen(function* () {
        const { session } = yield* startControl(url)
        const { projectId, place } = yield* placement
        const { nodeId, workspaceId } = yield* place()
        const node = yield* fakeNode(nodeId)
        const sessionId = makeId("sess")
        yield* openSession(session, { projectId, workspaceId, nodeId, mode: "conversation", sessionId })
        const t0 = Date.now()
        const at = (ms: number) => new Date(t0 + ms).toISOString()
        yield* node.publish(
          node.activity(sessionId, { activity: "prompting", promptEpoch: 1, observedAt: at(100) }),
          sessionId
        )
        yield* waitUntil(
          "the node's prompting report is the snapshot",
          snapshotOf(sessionId).pipe(
            Effect.map((s) => (s?.source === "vm_report" && s.activity === "prompting" ? s : undefined))
          )
        )
        const idle = node.activity(sessionId, {
          activity: "idle",
          promptEpoch: 1,
          stopReason: "end_turn",
          observedAt: at(300)
        })
        yield* node.publish(idle, sessionId)
        yield* waitUntil(
          "the snapshot is idle",
          snapshotOf(sessionId).pipe(Effect.map((s) => (s?.activity === "idle" ? s : undefined)))
        )
        // A late re-report of prompting, observed before the idle: it must not bring back "working".
        const late = node.activity(sessionId, { activity: "prompting", promptEpoch: 1, observedAt: at(200) })
        const reply = yield* Actors.ask(
          session,
          sessionId,
          ControlProtocol.SessionReport.make(
            { nodeId, report: { type: "session.activity-reported", body: late.body } },
            { id: late.id }
          )
        )
        expect(reply.outcome).toBe("applied")
        const snapshot = yield* snapshotOf(sessionId)
        expect(snapshot).toMatchObject({ activity: "idle", promptEpoch: 1, reason: "completed", source: "vm_report" })
        expect(snapshot?.updatedAt).toBe(at(300))
        // An idle report of an older prompt epoch after a new prompt: the new prompt's prompting stays.
        const prompted = yield* Actors.ask(
          session,
          sessionId,
          ControlProtocol.SessionPromptCommand.make({ sessionId, prompt: "more" })
        )
        expect(prompted).toMatchObject({ outcome: "applied", reply: { ok: true, promptEpoch: 2 } })
        const stale = node.activity(sessionId, { activity: "idle", promptEpoch: 1, stopReason: "end_turn" })
        yield* Actors.ask(
          session,
          sessionId,
          ControlProtocol.SessionReport.make(
            { nodeId, report: { type: "session.activity-reported", body: stale.body } },
            { id: stale.id }
          )
        )
        expect(yield* snapshotOf(sessionId)).toMatchObject({ activity: "prompting", promptEpoch: 2 })
        const prompt = yield* waitUntil(
          "the node received the follow-up",
          Effect.sync(() => node.commands.find((c) => c.type === "session.prompt"))
        )
        expect(prompt.body).toMatchObject({ sessionId, prompt: "more", promptEpoch: 2 })
        // The node's clock runs a minute behind: its report of epoch 2 still replaces what the control
        // plane wrote for that epoch, and then only newer reports of the node replace it.
        const behind = (ms: number) => new Date(t0 - 60_000 + ms).toISOString()
        yield* node.publish(
          node.activity(sessionId, { activity: "prompting", promptEpoch: 2, observedAt: behind(0) }),
          sessionId
        )
        yield* node.publish(
          node.activity(sessionId, {
            activity: "idle",
            promptEpoch: 2,
            stopReason: "end_turn",
            observedAt: behind(50)
          }),
          sessionId
        )
        const skewed = yield* waitUntil(
          "the skewed node's idle is the snapshot",
          snapshotOf(sessionId).pipe(Effect.map((s) => (s?.promptEpoch === 2 && s.activity === "idle" ? s : undefined)))
        )
        expect(skewed).toMatchObject({ source: "vm_report", updatedAt: behind(50) })
      }).pipe(Effect.provide(env())),
    60_000
  )

  it.scopedLive(
    "reports an earlier ingress holder was given and never acknowledged come again at once and in order, not after the ack wait",
    () =>
      Effect.gen(function* () {
        const { ingress, node, sessionId } = yield* sessionWithoutIngress
        // An ingress of its own with the production ack wait (30 s), so a redelivery by the ack wait shows.
        const durable = makeId("msg").replace("msg_", "ing")
        const holder = (instanceId: string) => ingress(instanceId, { durable, ackWait: "30 seconds" })
        const first = yield* holder("ingress-first")
        yield* first.stop
        const say = (i: number) => node.publish(node.event(sessionId, 1, { type: "text", text: `${i}` }), sessionId)
        // The earlier holder was given three reports and died before acknowledging them.
        for (const i of [0, 1, 2]) yield* say(i)
        const { js } = yield* Nats
        const consumer = yield* Effect.promise(() => js.consumers.get("SAM_AGENT", durable))
        const batch = yield* Effect.promise(() => consumer.fetch({ max_messages: 3, expires: 2_000 }))
        let taken = 0
        yield* Effect.promise(async () => {
          for await (const _ of batch) if (++taken === 3) break
        })
        expect(taken).toBe(3)
        for (const i of [3, 4, 5]) yield* say(i)
        const started = Date.now()
        yield* holder("ingress-second")
        const rows = yield* waitUntil(
          "all six in the transcript",
          transcriptOf(sessionId).pipe(Effect.map((rows) => (rows.length >= 6 ? rows : undefined))),
          { timeout: "10 seconds" }
        )
        console.log(`the unacknowledged reports handled ${Date.now() - started} ms after the new holder started`)
        expect(rows.map((r) => r.payload.text)).toEqual(["0", "1", "2", "3", "4", "5"])
        expect(rows.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6])
      }).pipe(Effect.provide(env())),
    60_000
  )

  it.scopedLive(
    "reports that wait together go to the session as one run; one applied alone before, or stored twice in the run, counts once",
    () =>
      Effect.gen(function* () {
        const { ingress, node, sessionId } = yield* sessionWithoutIngress
        const published = yield* collect(`sam.evt.*.session.${sessionId}.session.*`)
        const durable = makeId("msg").replace("msg_", "ing")
        const holder = (instanceId: string) => ingress(instanceId, { durable })
        const events = Array.from({ length: 10 }, (_, i) => node.event(sessionId, 1, { type: "text", text: `${i}` }))
        // The first report is applied on its own.
        const first = yield* holder("ingress-first")
        yield* node.publish(events[0]!, sessionId)
        yield* waitUntil(
          "the first report in the transcript",
          transcriptOf(sessionId).pipe(Effect.map((rows) => rows.length === 1 || undefined))
        )
        yield* first.stop
        // With no ingress running, the rest wait: the first stored again, and the sixth stored twice.
        yield* node.publishRaw(events[0]!, sessionId)
        for (const [i, event] of events.entries()) {
          if (i === 0) continue
          yield* node.publish(event, sessionId)
          if (i === 5) yield* node.publishRaw(event, sessionId)
        }
        yield* holder("ingress-second")
        // A last report after them: once it is in, every repeat before it was seen (one lane, in order).
        const last = node.event(sessionId, 1, { type: "text", text: "last" })
        yield* node.publish(last, sessionId)
        const rows = yield* waitUntil(
          "the last report in the transcript",
          transcriptOf(sessionId).pipe(
            Effect.map((rows) => (rows.some((r) => r.payload.text === "last") ? rows : undefined))
          ),
          { timeout: "10 seconds" }
        )
        expect(rows.map((r) => r.payload.text)).toEqual(["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "last"])
        expect(rows.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
        expect(rows.map((r) => r.reportId)).toEqual([...events, last].map((e) => e.id))
        // The eleven that waited took fewer commands than reports: they went as runs.
        const sql = yield* SqlClient.SqlClient
        const [runs] = yield* sql<{ n: number }>`
          SELECT count(*)::int AS n FROM actor_inbox WHERE entity_id = ${sessionId} AND type = 'session.report-run'`
        expect(runs!.n).toBeGreaterThanOrEqual(1)
        expect(runs!.n).toBeLessThan(11)
        // A run's entries went out as batches: each entry once, in fewer messages than entries.
        const seqs = yield* waitUntil(
          "every entry published",
          Effect.sync(() => (publishedSeqs(published).length >= 11 ? publishedSeqs(published) : undefined))
        )
        expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
        const transcriptMessages = published.filter((p) => p.envelope.type.startsWith("session.event"))
        expect(transcriptMessages.some((p) => p.envelope.type === "session.event-batch")).toBe(true)
        expect(transcriptMessages.length).toBeLessThan(11)
      }).pipe(Effect.provide(env())),
    60_000
  )

  it.scopedLive(
    "a report sent alone behind a run that holds it, both applied in one transaction, keeps its place in the run",
    () =>
      Effect.gen(function* () {
        // The runtime's group commit, driven directly so the two commands surely share one transaction: it claims
        // both commands' ids before it handles either, so the run finds its second report's id already taken.
        const sql = yield* SqlClient.SqlClient
        const store = makeStore(sql, 10_000)
        const session = yield* SessionActor.make({ name: makeId("msg").replace("msg_", "sg"), shards: 1 })
        expect(yield* store.writeFence(session.name, 0, 1, "test", 1_000)).toBe(true)
        const { projectId, place } = yield* placement
        const { nodeId, workspaceId } = yield* place()
        const node = yield* fakeNode(nodeId)
        const sessionId = makeId("sess")
        const commit = committer(store, session)
        const group = (...envelopes: ReadonlyArray<Envelope>) =>
          commit(...envelopes.map((envelope) => ({ sessionId, envelope })))
        const [opened] = yield* group(conversationOpen({ sessionId, projectId, workspaceId, nodeId }))
        expect(opened?._tag).toBe("Applied")

        const events = ["a", "b", "c"].map((text) => node.event(sessionId, 1, { type: "text", text }))
        const run = ControlProtocol.SessionReportRun.make({
          nodeId,
          sessionId: sessionId as never,
          reports: events.map((e) => ({ id: e.id, report: { type: "session.event-reported", body: e.body } }))
        })
        const alone = ControlProtocol.SessionReport.make(
          { nodeId, report: { type: "session.event-reported", body: events[1]!.body } },
          { id: events[1]!.id }
        )
        const results = yield* group(run, alone)
        // the run applies all three; the lone copy of the second is then a repeat
        expect(results.map((r) => r._tag)).toEqual(["Applied", "Duplicate"])
        const rows = yield* transcriptOf(sessionId)
        expect(rows.map((r) => r.payload.text)).toEqual(["a", "b", "c"])
        expect(rows.map((r) => r.seq)).toEqual([1, 2, 3])
        expect(rows.map((r) => r.reportId)).toEqual(events.map((e) => e.id))
        // and once more, each alone: nothing changes
        for (const again of [run, alone]) expect((yield* group(again)).map((r) => r._tag)).toEqual(["Duplicate"])
        expect((yield* transcriptOf(sessionId)).length).toBe(3)
        // A node that names a report after a user's command behind it takes nothing over: the command is applied,
        // and the report, whose id was already claimed, is not.
        const prompt = ControlProtocol.SessionPromptCommand.make({ sessionId: sessionId as never, prompt: "next" })
        const [forged, honest] = ["forged", "d"].map((text) => node.event(sessionId, 1, { type: "text", text }))
        const forgedRun = ControlProtocol.SessionReportRun.make({
          nodeId,
          sessionId: sessionId as never,
          reports: [
            { id: prompt.id, report: { type: "session.event-reported", body: forged!.body } },
            { id: honest!.id, report: { type: "session.event-reported", body: honest!.body } }
          ]
        })
        expect((yield* group(forgedRun, prompt)).map((r) => r._tag)).toEqual(["Applied", "Applied"])
        const [promptRow] = yield* sql<{
          promptEpoch: number
        }>`SELECT prompt_epoch FROM sessions WHERE id = ${sessionId}`
        expect(promptRow?.promptEpoch).toBe(2)
        expect((yield* transcriptOf(sessionId)).map((r) => r.payload.text)).not.toContain("forged")
      }).pipe(Effect.provide(env())),
    60_000
  )

  it.scopedLive(
    "reports of two sessions committed together go out as one batch per session and request; each entry keeps its request's id",
    () =>
      Effect.gen(function* () {
        // The runtime's group commit, driven directly so the reports surely share one transaction, as a burst's do.
        const sql = yield* SqlClient.SqlClient
        const committed: Array<{ subject: string; payload: string }> = []
        const store = makeStore(sql, 10_000, (rows) => void committed.push(...rows))
        const session = yield* SessionActor.make({ name: makeId("msg").replace("msg_", "sg"), shards: 1 })
        expect(yield* store.writeFence(session.name, 0, 1, "test", 1_000)).toBe(true)
        const { projectId, place } = yield* placement
        const group = committer(store, session)
        const [a, b] = yield* Effect.forEach(["a", "b"], () =>
          Effect.gen(function* () {
            const { nodeId, workspaceId } = yield* place()
            const sessionId = makeId("sess")
            const open = conversationOpen({ sessionId, projectId, workspaceId, nodeId })
            expect((yield* group({ sessionId, envelope: open })).map((r) => r._tag)).toEqual(["Applied"])
            return { sessionId, nodeId, node: yield* fakeNode(nodeId) }
          })
        )
        committed.length = 0
        const report = (to: typeof a, text: string, correlationId: string) => {
          const event = to!.node.event(to!.sessionId, 1, { type: "text", text })
          return {
            sessionId: to!.sessionId,
            envelope: ControlProtocol.SessionReport.make(
              { nodeId: to!.nodeId, report: { type: "session.event-reported", body: event.body } },
              { id: event.id, correlationId }
            )
          }
        }
        const results = yield* group(
          report(a, "a1", "req_x"),
          report(b, "b1", "req_x"),
          report(a, "a2", "req_x"),
          report(b, "b2", "req_x"),
          report(a, "a3", "req_y")
        )
        expect(results.map((r) => r._tag)).toEqual(["Applied", "Applied", "Applied", "Applied", "Applied"])
        // Stored as each came: in order, with the id of the request each answers.
        const stored: Array<number> = []
        for (const [to, expected] of [
          [
            a,
            [
              ["a1", "req_x"],
              ["a2", "req_x"],
              ["a3", "req_y"]
            ]
          ],
          [
            b,
            [
              ["b1", "req_x"],
              ["b2", "req_x"]
            ]
          ]
        ] as const) {
          const rows = yield* sql<{ seq: string; text: string; correlationId: string; ms: string }>`
            SELECT seq, payload->>'text' AS text, correlation_id, (extract(epoch FROM at) * 1000)::bigint AS ms
            FROM session_events WHERE session_id = ${to!.sessionId} ORDER BY seq`
          expect(rows.map((r) => [r.text, r.correlationId])).toEqual(expected)
          expect(rows.map((r) => Number(r.seq))).toEqual(expected.map((_, i) => i + 1))
          stored.push(...rows.map((r) => Number(r.ms)))
        }
        // Published as what a reader of each session needs: one batch per session and request, in seq order.
        const sent = committed
          .map((row) => JSON.parse(row.payload) as Envelope)
          .filter((e) => e.type === "session.event" || e.type === "session.event-batch")
          .map((e) => {
            const body = e.body as { sessionId: string; seq?: number; entries?: Array<{ seq: number }> }
            return [
              body.sessionId === a!.sessionId ? "a" : "b",
              e.type,
              body.entries?.map((x) => x.seq) ?? [body.seq],
              e.correlationId
            ]
          })
        expect(sent).toEqual([
          ["a", "session.event-batch", [1, 2], "req_x"],
          ["b", "session.event-batch", [1, 2], "req_x"],
          ["a", "session.event", [3], "req_y"]
        ])
        // One time for the transaction's entries, live (each batch's) and stored: a reader sees the same after a reload.
        const times = committed
          .map((row) => JSON.parse(row.payload) as Envelope)
          .filter((e) => e.type === "session.event" || e.type === "session.event-batch")
          .map((e) => Date.parse(e.at))
        expect(new Set([...times, ...stored]).size).toBe(1)
      }).pipe(Effect.provide(env())),
    60_000
  )

  it.scopedLive(
    "with two ingress instances one consumes at a time, the transcript stays in order, and the other takes over",
    () =>
      Effect.gen(function* () {
        const { session, ingress, stopFirstIngress } = yield* startControl(url)
        yield* ingress(makeId("msg").replace("msg_", "b"))
        const { projectId, place } = yield* placement
        const { nodeId, workspaceId } = yield* place()
        const node = yield* fakeNode(nodeId)
        const ids = [makeId("sess"), makeId("sess"), makeId("sess")]
        for (const sessionId of ids) {
          yield* openSession(session, { projectId, workspaceId, nodeId, sessionId })
        }
        const burst = (from: number, n: number) =>
          Effect.forEach(
            ids,
            (sessionId) =>
              Effect.forEach(
                Array.from({ length: n }, (_, i) => from + i),
                (i) => node.publish(node.event(sessionId, 1, { type: "text", text: `${i}` }), sessionId),
                { discard: true }
              ),
            { concurrency: "unbounded", discard: true }
          )
        const complete = (n: number) =>
          waitUntil(
            `${n} entries in every transcript`,
            Effect.forEach(ids, transcriptOf).pipe(
              Effect.map((all) => (all.every((rows) => rows.length >= n) ? all : undefined))
            ),
            { timeout: "30 seconds" }
          )
        yield* burst(0, 60)
        yield* complete(60)
        // The holder goes away; the other instance takes the lease and the reports keep flowing.
        yield* stopFirstIngress
        yield* burst(60, 60)
        const all = yield* complete(120)
        for (const rows of all) {
          expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 120 }, (_, i) => i + 1))
          expect(rows.map((r) => r.payload.text)).toEqual(Array.from({ length: 120 }, (_, i) => `${i}`))
        }
      }).pipe(Effect.provide(env())),
    60_000
  )
})
