import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import type { ActorRuntime } from "@sam/actors"
import { Actors } from "@sam/actors"
import { Domain, Subjects } from "@sam/bus"
import { Effect, Layer, type Redacted } from "effect"
import { beforeAll } from "vitest"
import { natsAdmin, sqlLayer, useOwnNats, waitUntil } from "../../src/Env.js"
import {
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
