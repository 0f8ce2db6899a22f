import { layer } from "@effect/vitest"
import { Kv, Topology } from "@sam/bus"
import { Effect, Option } from "effect"
import { expect } from "vitest"
import { z } from "zod"
import { Nats, natsAdmin, unique } from "../../src/Env.js"

const Snapshot = z.object({ activity: z.enum(["idle", "prompting"]), lastSeq: z.number().int() })

layer(natsAdmin(), { excludeTestServices: true, timeout: 30_000 })("KV compare-and-set", (it) => {
  it.effect("an update with a stale revision is rejected and the newer value stays", () =>
    Effect.gen(function* () {
      const store = yield* Kv.open(Topology.Buckets.sessionState.name, Snapshot)
      const key = unique("sess_")
      const first = yield* store.create(key, { activity: "idle", lastSeq: 0 })
      const second = yield* store.update(key, { activity: "prompting", lastSeq: 1 }, first)
      const stale = yield* store.update(key, { activity: "idle", lastSeq: 0 }, first).pipe(Effect.flip)
      expect(stale._tag).toBe("KvConflict")
      expect(stale).toMatchObject({ key, expectedRevision: first })
      const current = yield* store.get(key)
      expect(Option.getOrThrow(current)).toEqual({ value: { activity: "prompting", lastSeq: 1 }, revision: second })
    })
  )

  it.effect("create refuses an existing key; a bad value is refused before it is written", () =>
    Effect.gen(function* () {
      const store = yield* Kv.open(Topology.Buckets.sessionState.name, Snapshot)
      const key = unique("sess_")
      yield* store.create(key, { activity: "idle", lastSeq: 0 })
      const again = yield* store.create(key, { activity: "idle", lastSeq: 5 }).pipe(Effect.flip)
      expect(again._tag).toBe("KvConflict")
      const bad = yield* Effect.exit(store.put(key, { activity: "dancing", lastSeq: 1 } as never))
      expect(bad._tag).toBe("Failure")
      expect(Option.getOrThrow(yield* store.get(key)).value.lastSeq).toBe(0)
    })
  )

  it.effect("a value that no longer parses is reported as corrupt, a missing key as none", () =>
    Effect.gen(function* () {
      const { kvm } = yield* Nats
      const raw = yield* Effect.promise(() => kvm.open(Topology.Buckets.sessionState.name))
      const key = unique("sess_")
      yield* Effect.promise(() => raw.put(key, '{"activity":"dancing"}'))
      const store = yield* Kv.open(Topology.Buckets.sessionState.name, Snapshot)
      const corrupt = yield* store.get(key).pipe(Effect.flip)
      expect(corrupt._tag).toBe("KvCorrupt")
      expect(Option.isNone(yield* store.get(unique("missing_")))).toBe(true)
    })
  )
})
