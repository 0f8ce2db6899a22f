import { describe, expect, it } from "@effect/vitest"
import { Domain, Kv, makeId, Topology } from "@sam/bus"
import { Effect, Option } from "effect"
import * as SessionSnapshots from "../../../actors/src/domain/SessionSnapshots.js"
import { natsAdmin } from "../../src/Env.js"

type Snapshot = Domain.SessionSnapshot

const snapshot = (lastSeq: number, activity: Snapshot["activity"] = "prompting"): Snapshot => ({
  activity,
  promptStartedAt: null,
  promptEpoch: 1,
  plan: null,
  source: "vm_report",
  reason: null,
  lastSeq,
  updatedAt: new Date().toISOString()
})

/** Stage `decide` for the session in a transaction of its own and store it, as a command's commit does. */
const commit = (snapshots: SessionSnapshots.SessionSnapshots, sessionId: string, decide: (s?: Snapshot) => Snapshot) =>
  Effect.gen(function* () {
    snapshots.begin(sessionId, makeId("msg"))
    yield* snapshots.stage(sessionId, decide)
    for (const store of snapshots.takeStaged(sessionId)) yield* store
  })

describe("session snapshots: compare-and-set on what this instance last stored", () => {
  it.scopedLive(
    "a snapshot written by someone else meanwhile is what the next write decides on, never overwritten blindly",
    () =>
      Effect.gen(function* () {
        const snapshots = yield* SessionSnapshots.open()
        const kv = yield* Kv.open(Topology.Buckets.sessionState.name, Domain.SessionSnapshot)
        const sessionId = makeId("sess")
        const bump = (current?: Snapshot) => snapshot((current?.lastSeq ?? 0) + 1, current?.activity)

        yield* commit(snapshots, sessionId, bump)
        yield* commit(snapshots, sessionId, bump)
        const ours = yield* kv.get(sessionId)
        expect(Option.getOrThrow(ours).value.lastSeq).toBe(2)

        // Another writer (another instance after a takeover, the healer) moves the snapshot on.
        yield* kv.update(sessionId, snapshot(10, "idle"), Option.getOrThrow(ours).revision)

        // This instance's next write fails its compare-and-set on the revision it knew, reads, and decides on the
        // other writer's value: lastSeq 11 and its activity, not 3 over a stale copy.
        yield* commit(snapshots, sessionId, bump)
        const after = Option.getOrThrow(yield* kv.get(sessionId)).value
        expect(after.lastSeq).toBe(11)
        expect(after.activity).toBe("idle")

        // And a deleted key is created again rather than lost.
        yield* kv.delete(sessionId)
        yield* commit(snapshots, sessionId, bump)
        expect(Option.getOrThrow(yield* kv.get(sessionId)).value.lastSeq).toBe(1)
      }).pipe(Effect.provide(natsAdmin("snapshot-cas")))
  )
})
