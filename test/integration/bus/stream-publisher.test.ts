import { layer } from "@effect/vitest"
import { defineMessage, encode, makeStreamPublisher, Subjects } from "@sam/bus"
import { Effect } from "effect"
import { expect } from "vitest"
import { z } from "zod"
import { Nats, natsAdmin, unique } from "../../src/Env.js"

const Ping = defineMessage("test.ping", z.object({ n: z.number() }), { durable: true })

/** One publisher for the test's connection, closed with its scope. */
const publisher = Effect.gen(function* () {
  const { nc } = yield* Nats
  return yield* Effect.acquireRelease(
    Effect.sync(() => makeStreamPublisher(nc, 2_000)),
    (p) => Effect.sync(() => p.close())
  )
})

const stored = (subject: string) =>
  Effect.gen(function* () {
    const { jsm } = yield* Nats
    const info = yield* Effect.promise(() => jsm.streams.info("SAM_CMD", { subjects_filter: subject }))
    return info.state.subjects?.[subject] ?? 0
  })

layer(natsAdmin(), { excludeTestServices: true, timeout: 30_000 })(
  "stream publisher (acknowledgements on one subscription)",
  (it) => {
    it.scoped("a batch is stored in order and settles once all are acknowledged; a repeat counts as stored, once", () =>
      Effect.gen(function* () {
        const { jsm } = yield* Nats
        const p = yield* publisher
        const subject = Subjects.command("test", 0, unique())
        const envelopes = Array.from({ length: 300 }, (_, n) => Ping.make({ n }))
        const batch = envelopes.map((envelope) => ({ subject, data: encode(envelope), msgId: envelope.id }))
        yield* Effect.promise(() => p.publish(batch))
        expect(yield* stored(subject)).toBe(300)
        // the same messages again, and two batches at once: nothing new is stored
        yield* Effect.promise(() => Promise.all([p.publish(batch.slice(0, 150)), p.publish(batch.slice(150))]))
        expect(yield* stored(subject)).toBe(300)
        // in order: the subject's last message is the batch's last
        const last = yield* Effect.promise(() => jsm.streams.getMessage("SAM_CMD", { last_by_subj: subject }))
        expect(JSON.parse(new TextDecoder().decode(last?.data)).body.n).toBe(299)
        yield* Effect.promise(() => p.publish([]))
      })
    )

    it.scoped("a subject no stream takes fails the batch with a clear error, and the publisher goes on", () =>
      Effect.gen(function* () {
        const p = yield* publisher
        const envelope = Ping.make({ n: 1 })
        const error = yield* Effect.promise(() =>
          p.publish([{ subject: `nostream.${unique()}`, data: encode(envelope), msgId: envelope.id }]).then(
            () => undefined,
            (e: unknown) => e
          )
        )
        expect(String(error)).toMatch(/publish to nostream\.[^:]+: no stream answered/)
        const subject = Subjects.command("test", 0, unique())
        yield* Effect.promise(() => p.publish([{ subject, data: encode(envelope), msgId: envelope.id }]))
        expect(yield* stored(subject)).toBe(1)
      })
    )

    it.scoped("closing it fails what still waits", () =>
      Effect.gen(function* () {
        const { nc } = yield* Nats
        const p = makeStreamPublisher(nc, 2_000)
        const subject = Subjects.command("test", 0, unique())
        const envelope = Ping.make({ n: 1 })
        const pending = p.publish([{ subject, data: encode(envelope), msgId: envelope.id }])
        p.close()
        const error = yield* Effect.promise(() =>
          pending.then(
            () => undefined,
            (e: unknown) => e
          )
        )
        expect(String(error)).toMatch(/closed/)
      })
    )
  }
)
