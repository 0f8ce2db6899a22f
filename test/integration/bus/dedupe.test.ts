import { layer } from "@effect/vitest"
import { defineMessage, Publish, Subjects } from "@sam/bus"
import { Effect } from "effect"
import { expect } from "vitest"
import { z } from "zod"
import { Nats, natsAdmin, unique } from "../../src/Env.js"

const Ping = defineMessage("test.ping", z.object({ n: z.number() }), { durable: true })

layer(natsAdmin(), { excludeTestServices: true, timeout: 30_000 })("publish de-duplication", (it) => {
  it.effect("the same message published twice within the duplicate window is stored once", () =>
    Effect.gen(function* () {
      const { jsm } = yield* Nats
      const subject = Subjects.command("test", 0, unique())
      const envelope = Ping.make({ n: 1 })
      const first = yield* Publish.publish(subject, envelope)
      const second = yield* Publish.publish(subject, envelope)
      expect(first.duplicate).toBe(false)
      expect(second.duplicate).toBe(true)
      expect(second.seq).toBe(first.seq)
      const other = yield* Publish.publish(subject, Ping.make({ n: 1 }))
      expect(other.duplicate).toBe(false)
      const info = yield* Effect.promise(() => jsm.streams.info("SAM_CMD", { subjects_filter: subject }))
      expect(info.state.subjects?.[subject]).toBe(2)
    })
  )
})
