import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Actor, Actors } from "@sam/actors"
import { Domain, makeId, Subjects } from "@sam/bus"
import { Effect, Fiber, Layer, type Redacted } from "effect"
import { beforeAll } from "vitest"
import { natsAdmin, sqlLayer, useOwnNats, waitUntil } from "../../src/Env.js"
import {
  collect,
  fakeNode,
  type OpenInput,
  openSession,
  placement,
  sessionDatabase,
  sessionRow,
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
const env = () => Layer.merge(natsAdmin("session-lifecycle"), sqlLayer(url))

const openOn = (session: Actor.AnyActorKind, input: OpenInput) =>
  openSession(session, input).pipe(
    Effect.map(({ sessionId, reply }) => {
      expect(reply.outcome).toBe("applied")
      return sessionId
    })
  )

describe("session actor: failure, refusals, the healer", () => {
  it.scopedLive(
    "session.fail leaves the snapshot not prompting, emits session.failed, and a later prompt is refused",
    () =>
      Effect.gen(function* () {
        const { session } = yield* startControl(url)
        const { projectId, place } = yield* placement
        const { nodeId, workspaceId } = yield* place()
        const node = yield* fakeNode(nodeId)
        const events = yield* collect(Subjects.projectEvents(projectId))
        const sessionId = yield* openOn(session, { projectId, nodeId, workspaceId })
        yield* node.publish(node.activity(sessionId, { activity: "prompting", promptEpoch: 1 }), sessionId)
        yield* waitUntil(
          "prompting reported",
          snapshotOf(sessionId).pipe(Effect.map((s) => (s?.source === "vm_report" ? s : undefined)))
        )

        const failed = yield* Actors.ask(
          session,
          sessionId,
          ControlProtocol.SessionFail.make({ sessionId, reason: "task failed at workspace_ready: boom" })
        )
        expect(failed).toMatchObject({ outcome: "applied", reply: { ok: true } })
        const snapshot = yield* snapshotOf(sessionId)
        expect(snapshot?.activity).not.toBe("prompting")
        expect(snapshot).toMatchObject({ activity: "error", reason: "failed", promptStartedAt: null })
        expect(yield* sessionRow(sessionId)).toMatchObject({
          status: "failed",
          errorReason: "task failed at workspace_ready: boom"
        })
        const failedEvent = yield* waitUntil(
          "session.failed published",
          Effect.sync(() =>
            events.find((e) => e.subject === `sam.evt.${projectId}.session.${sessionId}.session.failed`)
          )
        )
        expect(failedEvent.envelope.body).toEqual({ sessionId, reason: "task failed at workspace_ready: boom" })
        yield* waitUntil(
          "the node was told to stop the session",
          Effect.sync(() => node.commands.find((c) => c.type === "session.stop"))
        )

        // A prompt to the failed session: a clear refusal, and nothing changes.
        const refused = yield* Actors.ask(
          session,
          sessionId,
          ControlProtocol.SessionPromptCommand.make({ sessionId, prompt: "again?" })
        )
        expect(refused).toMatchObject({ outcome: "applied", reply: { ok: false, code: "session_failed" } })
        expect((refused.reply as { message: string }).message).toContain(
          "has failed (task failed at workspace_ready: boom)"
        )
        expect(yield* sessionRow(sessionId)).toMatchObject({ status: "failed", promptEpoch: 1 })
        expect(yield* snapshotOf(sessionId)).toEqual(snapshot)
        // A late "prompting" from the node does not make a failed session look working, and a late event
        // does not grow its transcript: both are refused and audited.
        yield* node.publish(node.activity(sessionId, { activity: "prompting", promptEpoch: 1 }), sessionId)
        yield* node.publish(node.event(sessionId, 1, { type: "text", text: "late" }), sessionId)
        const sql = yield* SqlClient.SqlClient
        const late = yield* waitUntil(
          "the late reports audited",
          sql<{ type: string; reason: string }>`
            SELECT type, reason FROM dropped_reports WHERE entity_id = ${sessionId} ORDER BY id`.pipe(
            Effect.map((rows) => (rows.length === 2 ? rows : undefined))
          )
        )
        expect(late).toEqual([
          { type: "session.activity-reported", reason: "session_ended" },
          { type: "session.event-reported", reason: "session_ended" }
        ])
        // Its transcript holds only the failure, which says why (ADR 0019): the late event was not kept.
        expect((yield* transcriptOf(sessionId)).map((r) => r.payload)).toEqual([
          { type: "failed", reason: "task failed at workspace_ready: boom", source: "control_plane" }
        ])
        expect((yield* snapshotOf(sessionId))?.activity).toBe("error")
        expect(node.commands.filter((c) => c.type === "session.prompt")).toEqual([])
        // A repeated fail is a no-op; so is a prompt to a session nobody opened, refused as unknown.
        const again = yield* Actors.ask(
          session,
          sessionId,
          ControlProtocol.SessionFail.make({ sessionId, reason: "again" })
        )
        expect(again.reply).toMatchObject({ ok: true, duplicate: true })
        const ghost = makeId("sess")
        const unknown = yield* Actors.ask(
          session,
          ghost,
          ControlProtocol.SessionPromptCommand.make({ sessionId: ghost, prompt: "hi" })
        )
        expect(unknown.reply).toMatchObject({ ok: false, code: "not_found" })
      }).pipe(Effect.provide(env())),
    60_000
  )

  it.scopedLive(
    "the task hears running once, awaiting_followup at a turn's end, and failed when the agent fails",
    () =>
      Effect.gen(function* () {
        const { session, task } = yield* startControl(url)
        const { projectId, place, task: makeTask } = yield* placement
        const { nodeId, workspaceId } = yield* place()
        const node = yield* fakeNode(nodeId)
        const taskCommands = yield* collect(`sam.cmd.${task.name}.>`)
        const taskId = yield* makeTask()
        const sessionId = yield* openOn(session, { projectId, nodeId, workspaceId, taskId, mode: "conversation" })
        yield* node.publish(node.activity(sessionId, { activity: "prompting", promptEpoch: 1 }), sessionId)
        yield* node.publish(node.activity(sessionId, { activity: "prompting", promptEpoch: 1 }), sessionId)
        yield* node.publish(
          node.activity(sessionId, { activity: "idle", promptEpoch: 1, stopReason: "end_turn" }),
          sessionId
        )
        const statuses = () => taskCommands.map((c) => (c.envelope.body as { status: string }).status)
        yield* waitUntil(
          "running and awaiting_followup",
          Effect.sync(() => (statuses().length >= 2 ? true : undefined))
        )
        expect(statuses()).toEqual(["running", "awaiting_followup"])
        expect(taskCommands[0]?.subject).toBe(Actor.subjectOf(task, taskId))

        yield* node.publish(node.event(sessionId, 1, { type: "failed", reason: "crashed 3 times" }), sessionId)
        yield* node.publish(
          node.activity(sessionId, { activity: "error", promptEpoch: 1, reason: "crashed 3 times" }),
          sessionId
        )
        yield* waitUntil(
          "the task told of the failure",
          Effect.sync(() => (statuses().length >= 3 ? true : undefined))
        )
        expect(taskCommands[2]?.envelope.body).toMatchObject({
          status: "failed",
          reason: "agent failed: crashed 3 times"
        })
        expect(yield* sessionRow(sessionId)).toMatchObject({ status: "failed" })
        expect((yield* snapshotOf(sessionId))?.activity).toBe("error")
        // The node's event, then the control plane's entry that says why the session failed (ADR 0019).
        expect((yield* transcriptOf(sessionId)).map((r) => r.payload)).toEqual([
          { type: "failed", reason: "crashed 3 times" },
          { type: "failed", reason: "agent failed: crashed 3 times", source: "control_plane" }
        ])
      }).pipe(Effect.provide(env())),
    60_000
  )

  it.scopedLive(
    "the healer ends a stale prompting's turn as lost (idle, reason lost), but not while the node says it is working",
    () =>
      Effect.gen(function* () {
        // A bound of 4 s: `alive` stays prompting only while a heartbeat naming it is fresher than that, and the test's
        // own heartbeats (every 200 ms) can stall for a second or more on a saturated machine.
        const { session } = yield* startControl(url, { healEvery: "500 millis", staleAfter: "4 seconds" })
        const { projectId, place } = yield* placement
        const { nodeId, workspaceId } = yield* place()
        const node = yield* fakeNode(nodeId)
        const events = yield* collect(Subjects.projectEvents(projectId))
        // Taken before `quiet` opens: its turn started after this, so it cannot be stale before 4 s from here.
        const openedAt = Date.now()
        const quiet = yield* openOn(session, { projectId, nodeId, workspaceId })
        const alive = yield* openOn(session, { projectId, nodeId, workspaceId })
        // The node heartbeats, listing `alive` as prompting and not `quiet`.
        const beating = yield* node
          .heartbeat([alive])
          .pipe(Effect.zipRight(Effect.sleep("200 millis")), Effect.forever, Effect.forkScoped)
        const healed = yield* waitUntil(
          "the quiet session healed",
          snapshotOf(quiet).pipe(Effect.map((s) => (s?.activity === "idle" ? s : undefined))),
          { timeout: "15 seconds" }
        )
        expect(Date.now() - openedAt).toBeGreaterThanOrEqual(4000)
        expect(healed).toMatchObject({
          activity: "idle",
          source: "healer",
          reason: "lost",
          promptStartedAt: null
        })
        // The turn ends in the transcript too (ADR 0021).
        expect((yield* transcriptOf(quiet)).at(-1)?.payload).toMatchObject({
          type: "turn-ended",
          reason: "lost",
          source: "control_plane"
        })
        yield* waitUntil(
          "the healed snapshot published",
          Effect.sync(() =>
            events.find(
              (e) =>
                e.subject === `sam.evt.${projectId}.session.${quiet}.session.activity` &&
                (e.envelope.body as { snapshot: { source: string } }).snapshot.source === "healer"
            )
          )
        )
        // `alive` has evidence of life: it stays prompting while the heartbeats name it.
        expect((yield* snapshotOf(alive))?.activity).toBe("prompting")
        yield* Fiber.interrupt(beating)
        const later = yield* waitUntil(
          "alive healed once the heartbeats stopped naming it",
          snapshotOf(alive).pipe(Effect.map((s) => (s?.activity === "idle" ? s : undefined))),
          { timeout: "15 seconds" }
        )
        expect(later).toMatchObject({ source: "healer", reason: "lost" })
        expect((yield* sessionRow(quiet))?.status).toBe("active")
      }).pipe(Effect.provide(env())),
    60_000
  )
})

describe("session actor: a completed task's session and its workspace's end (ADR 0023)", () => {
  it.scopedLive(
    "a stop of its workspace that overtakes its sleep puts it to sleep, not stopped; a delete stops it",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const { session } = yield* startControl(url)
        const { projectId, place, task } = yield* placement
        const open = () =>
          Effect.gen(function* () {
            const { nodeId, workspaceId } = yield* place()
            const taskId = yield* task()
            const node = yield* fakeNode(nodeId)
            const sessionId = yield* openOn(session, { projectId, nodeId, workspaceId, taskId, mode: "task" })
            // The task completed; its `session.sleep` is still on its way when the workspace stops.
            yield* sql`UPDATE tasks SET status = 'completed' WHERE id = ${taskId}`
            return { node, sessionId }
          })
        const stopped = (sessionId: string, keepsFiles: boolean) =>
          Actors.ask(
            session,
            sessionId,
            ControlProtocol.SessionStopCommand.make({
              sessionId: sessionId as never,
              reason: "its workspace was stopped (idle since its task ended)",
              from: "workspace",
              ...(keepsFiles ? { keepsFiles } : {})
            })
          )

        const kept = yield* open()
        expect((yield* stopped(kept.sessionId, true)).reply).toMatchObject({ ok: true })
        expect(yield* sessionRow(kept.sessionId)).toMatchObject({ status: "sleeping" })
        expect(yield* snapshotOf(kept.sessionId)).toMatchObject({ activity: "sleeping", reason: "completed" })
        yield* waitUntil(
          "the node told to stop its agent",
          Effect.sync(() => kept.node.commands.find((c) => c.type === "session.stop"))
        )
        // The sleep that follows changes nothing; a prompt is refused as to a sleeping session.
        const sleep = yield* Actors.ask(
          session,
          kept.sessionId,
          ControlProtocol.SessionSleep.make({ sessionId: kept.sessionId as never, reason: "its task completed" })
        )
        expect(sleep.reply).toMatchObject({ ok: true, duplicate: true })
        const prompt = yield* Actors.ask(
          session,
          kept.sessionId,
          ControlProtocol.SessionPromptCommand.make({ sessionId: kept.sessionId as never, prompt: "more?" })
        )
        expect(prompt.reply).toMatchObject({ ok: false, code: "session_sleeping" })

        // A delete takes its files: the session ends stopped, asleep or not.
        const deleted = yield* open()
        expect((yield* stopped(deleted.sessionId, false)).reply).toMatchObject({ ok: true })
        expect(yield* sessionRow(deleted.sessionId)).toMatchObject({ status: "stopped" })
        expect((yield* stopped(kept.sessionId, false)).reply).toMatchObject({ ok: true })
        expect(yield* sessionRow(kept.sessionId)).toMatchObject({ status: "stopped" })
      }).pipe(Effect.provide(env())),
    60_000
  )
})
