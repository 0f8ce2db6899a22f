import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import type { ActorRuntime } from "@sam/actors"
import { Actors } from "@sam/actors"
import { Domain, Kv, Subjects, Topology } from "@sam/bus"
import { Effect, Layer, type Redacted } from "effect"
import { beforeAll } from "vitest"
import { runSnapshotCheck } from "../../../actors/src/domain/SessionSnapshotCheck.js"
import { natsAdmin, sqlLayer, useOwnNats, waitUntil } from "../../src/Env.js"
import {
  fakeNode,
  openSession,
  placement,
  sessionDatabase,
  sessionRow,
  snapshotOf,
  startControl
} from "../../src/SessionHarness.js"

const { ControlProtocol } = Domain

// its report ingress takes every node's reports: on a nats-server of its own, not a neighbouring file's
useOwnNats()

let url: Redacted.Redacted<string>
beforeAll(async () => {
  url = await sessionDatabase()
})
const env = () => Layer.merge(natsAdmin("snapshot-after-commit"), sqlLayer(url))

describe("actor runtime: side effects outside Postgres follow the commit", () => {
  it.scopedLive(
    "a fenced command leaves the session's KV snapshot as it was; applied later, the snapshot follows",
    () =>
      Effect.gen(function* () {
        let refused: (event: ActorRuntime.RuntimeEvent) => void = () => undefined
        const commitRefused = new Promise<ActorRuntime.RuntimeEvent>((resolve) => {
          refused = resolve
        })
        const { session } = yield* startControl(url, {
          runtime: { onEvent: (event) => (event._tag === "CommitRefused" ? refused(event) : undefined) }
        })
        const { projectId, place } = yield* placement
        const { nodeId, workspaceId } = yield* place()
        const { sessionId, reply } = yield* openSession(session, { projectId, nodeId, workspaceId })
        expect(reply.outcome).toBe("applied")
        const before = yield* snapshotOf(sessionId)
        expect(before).toBeDefined()

        // Another owner took the shard in Postgres (as after a takeover): this owner's next commit is refused.
        const sql = yield* SqlClient.SqlClient
        const shard = Subjects.shardOf(sessionId, session.shards)
        yield* sql`UPDATE actor_shard_fences SET epoch = epoch + 1 WHERE kind = ${session.name} AND shard = ${shard}`
        yield* Actors.send(session, sessionId, ControlProtocol.SessionFail.make({ sessionId, reason: "fenced test" }))
        const event = yield* Effect.promise(() => commitRefused)
        expect(event).toMatchObject({ kind: session.name, shard })
        // Handled, then refused by the fence: neither the ledger nor the snapshot moved.
        expect(yield* snapshotOf(sessionId)).toEqual(before)
        expect((yield* sessionRow(sessionId))?.status).not.toBe("failed")

        // The shard is taken again and the command comes again: applied now, and the snapshot follows it.
        yield* waitUntil(
          "applied after the shard is taken again",
          sessionRow(sessionId).pipe(Effect.map((row) => (row?.status === "failed" ? row : undefined))),
          { timeout: "20 seconds" }
        )
        yield* waitUntil(
          "the snapshot follows the ledger",
          snapshotOf(sessionId).pipe(Effect.map((s) => (s?.activity === "error" ? s : undefined)))
        )
      }).pipe(Effect.provide(env()))
  )
})

describe("actor runtime: a snapshot write lost after its commit", () => {
  it.scopedLive(
    "the snapshot check makes an ended session's snapshot say how it ended, and hands one shown working to the healer",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const store = yield* Kv.open(Topology.Buckets.sessionState.name, Domain.SessionSnapshot)
        const { session } = yield* startControl(url, { healEvery: "500 millis", staleAfter: "5 seconds" })
        const { projectId, place, task } = yield* placement
        const { nodeId, workspaceId } = yield* place()
        const node = yield* fakeNode(nodeId)
        const open = (mode: "task" | "conversation") =>
          Effect.gen(function* () {
            const taskId = yield* task()
            const { sessionId } = yield* openSession(session, { projectId, nodeId, workspaceId, taskId, mode })
            return sessionId
          })
        /** `command` applied and its snapshot stored, then that write undone: as if the control plane stopped between. */
        const lost = <R>(sessionId: string, applied: Effect.Effect<unknown, unknown, R>, activity: string) =>
          Effect.gen(function* () {
            const before = (yield* snapshotOf(sessionId))!
            expect(before.activity).toBe("prompting")
            yield* applied
            yield* waitUntil(
              `the ${activity} snapshot stored`,
              snapshotOf(sessionId).pipe(Effect.map((s) => (s?.activity === activity ? s : undefined)))
            )
            yield* store.put(sessionId, before)
          })

        const slept = yield* open("task")
        yield* lost(
          slept,
          Actors.ask(
            session,
            slept,
            ControlProtocol.SessionSleep.make({ sessionId: slept, reason: "its task completed" })
          ),
          "sleeping"
        )
        const failed = yield* open("task")
        yield* lost(
          failed,
          Actors.ask(session, failed, ControlProtocol.SessionFail.make({ sessionId: failed, reason: "boom" })),
          "error"
        )
        // A turn the node reported ended: the report cancelled the healer's timer, and its `idle` was lost.
        const ended = yield* open("conversation")
        yield* lost(
          ended,
          node.publish(node.activity(ended, { activity: "idle", promptEpoch: 1, stopReason: "end_turn" }), ended),
          "idle"
        )
        const healing = yield* sql<{ n: number }>`
          SELECT count(*)::int AS n FROM actor_timers WHERE kind = ${session.name} AND entity_id = ${ended} AND name = 'heal'`
        expect(healing[0]!.n).toBe(0)
        expect((yield* sessionRow(slept))?.status).toBe("sleeping")
        expect((yield* snapshotOf(slept))?.activity).toBe("prompting")

        yield* Effect.forkScoped(runSnapshotCheck(session, { everyMs: 500 }))
        const says = (sessionId: string, activity: string) =>
          waitUntil(
            `session ${sessionId}'s snapshot to say ${activity}`,
            snapshotOf(sessionId).pipe(Effect.map((s) => (s?.activity === activity ? s : undefined))),
            { timeout: "15 seconds" }
          )
        expect(yield* says(slept, "sleeping")).toMatchObject({ source: "control_plane", reason: "completed" })
        expect(yield* says(failed, "error")).toMatchObject({ source: "control_plane", reason: "failed" })
        // Not ended in the ledger: the healer, on the node's evidence (none here), ends the turn it shows.
        expect(yield* says(ended, "idle")).toMatchObject({ source: "healer", reason: "lost" })
      }).pipe(Effect.provide(env())),
    60_000
  )
})
