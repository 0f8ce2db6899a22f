import { layer } from "@effect/vitest"
import { headers } from "@nats-io/nats-core"
import { Consume, defineMessage, encode, Publish, registry, Subjects } from "@sam/bus"
import { Chunk, Deferred, Effect, Queue, Stream } from "effect"
import { expect } from "vitest"
import { z } from "zod"
import { Nats, natsAdmin, unique, waitUntil } from "../../src/Env.js"

const Add = defineMessage("test.add", z.object({ n: z.number().int() }), { durable: true })
const messages = registry(Add)

/** A fresh consumer over one fresh subject of SAM_CMD. */
const setup = Effect.gen(function* () {
  const kind = unique("k")
  const durable = unique("c")
  yield* Consume.ensureConsumer("SAM_CMD", {
    durable,
    filterSubject: Subjects.commandShard(kind, 0),
    ackWait: "2 seconds"
  })
  return { subject: Subjects.command(kind, 0, unique("e")), durable }
})

/** `Consume.each` on `durable`, forked: every delivery acknowledged, and what `take` says of it kept in order. */
const eachAcked = <A>(
  durable: string,
  take: (delivery: Consume.Delivery<ReturnType<typeof Add.make>>) => A,
  options: Consume.ConsumeOptions
) =>
  Effect.gen(function* () {
    const seen: Array<A> = []
    yield* Effect.forkScoped(
      Consume.each<ReturnType<typeof Add.make>>(
        "SAM_CMD",
        durable,
        messages,
        (delivery) => {
          seen.push(take(delivery))
          delivery.msg.ack()
        },
        options
      )
    )
    return seen
  })

/** Once every delivery of `durable` is settled (none pending, none waiting for an ack): its info. */
const allSettled = (durable: string) =>
  Effect.flatMap(Nats, ({ jsm }) =>
    waitUntil(
      "every delivery settled",
      Effect.promise(() => jsm.consumers.info("SAM_CMD", durable)).pipe(
        Effect.map((info) => (info.num_ack_pending === 0 && info.num_pending === 0 ? info : undefined))
      )
    )
  )

layer(natsAdmin(), { excludeTestServices: true, timeout: 30_000 })("consuming a stream", (it) => {
  it.scoped(
    "without an exporter, what a handler publishes carries its message's traceparent, and none for a message with none",
    () =>
      Effect.gen(function* () {
        const { nc } = yield* Nats
        const { subject, durable } = yield* setup
        const out = Subjects.command(unique("k"), 0, unique("e"))
        const forwarded: Array<string> = []
        const sub = nc.subscribe(out, {
          callback: (_error, msg) =>
            void forwarded.push(msg.headers?.has("traceparent") ? msg.headers.get("traceparent") : "(none)")
        })
        yield* Effect.addFinalizer(() => Effect.sync(() => sub.unsubscribe()))
        const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        const traced = headers()
        traced.set("traceparent", traceparent)
        nc.publish(subject, encode(Add.make({ n: 1 })), { headers: traced })
        nc.publish(subject, encode(Add.make({ n: 2 })))
        yield* Consume.run(Consume.consume("SAM_CMD", durable, messages).pipe(Stream.take(2)), (delivery) =>
          Publish.publish(out, Add.make({ n: delivery.streamSequence })).pipe(Effect.as(Consume.Outcome.Ack()))
        ).pipe(
          // a consumer's own long-lived span is no message's trace: the second publish must not carry it
          Effect.withSpan("a long-lived consumer")
        )
        yield* waitUntil(
          "both forwarded",
          Effect.sync(() => (forwarded.length === 2 ? forwarded : undefined))
        )
        expect(forwarded).toEqual([traceparent, "(none)"])
      })
  )

  it.scoped("a malformed payload is terminated and reported, and the consumer goes on", () =>
    Effect.gen(function* () {
      const { nc } = yield* Nats
      const { subject, durable } = yield* setup
      const reports = yield* Queue.unbounded<Consume.MalformedDelivery>()
      yield* Publish.publish(subject, Add.make({ n: 1 }))
      nc.publish(subject, "{not json")
      nc.publish(subject, JSON.stringify({ hello: "world" }))
      nc.publish(subject, JSON.stringify({ ...Add.make({ n: 1 }), type: "test.unknown" }))
      nc.publish(subject, JSON.stringify({ ...Add.make({ n: 1 }), body: { n: "two" } }))
      yield* Publish.publish(subject, Add.make({ n: 2 }))

      const handled = yield* Consume.consume("SAM_CMD", durable, messages, {
        onMalformed: (report) => Queue.offer(reports, report)
      }).pipe(
        Stream.tap((delivery) => Consume.settle(delivery, Consume.Outcome.Ack())),
        Stream.take(2),
        Stream.runCollect
      )
      expect(Chunk.toArray(handled).map((d) => d.envelope.body)).toEqual([{ n: 1 }, { n: 2 }])
      const malformed = Chunk.toArray(yield* Queue.takeAll(reports))
      expect(malformed.map((r) => r.malformed.reason)).toEqual(["not-json", "bad-envelope", "unknown-type", "bad-body"])
      expect(malformed.every((r) => r.subject === subject && r.consumer === durable)).toBe(true)
      expect(malformed[3]?.malformed.message).toContain("n")

      // Terminated messages are never delivered again: nothing is pending or waiting for an ack.
      const { jsm } = yield* Nats
      const settled = yield* waitUntil(
        "every delivery settled",
        Effect.promise(() => jsm.consumers.info("SAM_CMD", durable)).pipe(
          Effect.map((info) => (info.num_ack_pending === 0 ? info : undefined))
        )
      )
      expect(settled.num_pending).toBe(0)
      expect(settled.num_redelivered).toBe(0)
    })
  )

  it.scoped(
    "each: deliveries handed over in order from the callback; malformed ones terminated and reported in the order they came",
    () =>
      Effect.gen(function* () {
        const { nc } = yield* Nats
        const { subject, durable } = yield* setup
        const reported: Array<string> = []
        yield* Publish.publish(subject, Add.make({ n: 1 }))
        nc.publish(subject, "{not json")
        yield* Publish.publish(subject, Add.make({ n: 2 }))
        nc.publish(subject, JSON.stringify({ ...Add.make({ n: 3 }), body: { n: "three" } }))
        yield* Publish.publish(subject, Add.make({ n: 4 }))
        const seen = yield* eachAcked(durable, (delivery) => delivery.envelope.body.n, {
          // the first takes longer to report than the second: it is still reported first
          onMalformed: (report) =>
            Effect.sleep(report.malformed.reason === "not-json" ? "100 millis" : "0 millis").pipe(
              Effect.andThen(Effect.sync(() => reported.push(report.malformed.reason)))
            )
        })
        yield* waitUntil(
          "three delivered",
          Effect.sync(() => (seen.length === 3 ? seen : undefined))
        )
        expect(seen).toEqual([1, 2, 4])
        const malformed = yield* waitUntil(
          "both reported",
          Effect.sync(() => (reported.length === 2 ? reported : undefined))
        )
        expect(malformed).toEqual(["not-json", "bad-body"])
        const settled = yield* allSettled(durable)
        expect(settled.num_redelivered).toBe(0)
      })
  )

  it.scoped(
    "each: a flood of malformed messages is terminated whole, but holds no more than its backlog to report",
    () =>
      Effect.gen(function* () {
        const { nc } = yield* Nats
        const { subject, durable } = yield* setup
        const reported: Array<number> = []
        const release = yield* Deferred.make<void>()
        const seen = yield* eachAcked(durable, (delivery) => delivery.streamSequence, {
          malformedBacklog: 2,
          // the first report waits: what comes meanwhile beyond the backlog is not reported one by one
          onMalformed: (report) =>
            Deferred.await(release).pipe(Effect.andThen(Effect.sync(() => reported.push(report.streamSequence))))
        })
        for (let i = 0; i < 10; i++) nc.publish(subject, `{not json ${i}`)
        yield* Publish.publish(subject, Add.make({ n: 1 }))
        // the good message goes on meanwhile, and every malformed one is terminated
        yield* waitUntil(
          "the good one delivered",
          Effect.sync(() => (seen.length === 1 ? seen : undefined))
        )
        yield* allSettled(durable)
        yield* Deferred.succeed(release, undefined)
        const done = yield* waitUntil(
          "the held ones reported",
          Effect.sync(() => (reported.length >= 3 ? reported : undefined))
        )
        // the one being reported when the flood came and the two the backlog held: the first three of the ten, in order
        const good = seen[0]!
        expect(done).toEqual([good - 10, good - 9, good - 8])
        yield* Effect.sleep("100 millis")
        expect(reported).toHaveLength(3)
      })
  )

  it.scoped("nak(delay) redelivers after the delay, term never again, and a failing handler is retried", () =>
    Effect.gen(function* () {
      const { subject, durable } = yield* setup
      yield* Publish.publish(subject, Add.make({ n: 1 }))
      yield* Publish.publish(subject, Add.make({ n: 2 }))
      const seen: Array<string> = []
      yield* Consume.run(
        Consume.consume("SAM_CMD", durable, messages).pipe(Stream.take(4)),
        (delivery) =>
          Effect.gen(function* () {
            const { n } = delivery.envelope.body as { n: number }
            seen.push(`${n}@${delivery.deliveryCount}`)
            if (n === 1 && delivery.deliveryCount === 1) return Consume.Outcome.Nak({ delay: "200 millis" })
            if (n === 1 && delivery.deliveryCount === 2) return yield* Effect.fail("handler failed")
            if (n === 2) return Consume.Outcome.Term({ reason: "not wanted" })
            return Consume.Outcome.Ack()
          }),
        { retryDelay: "100 millis" }
      )
      expect(seen).toEqual(["1@1", "2@1", "1@2", "1@3"])
    })
  )
})
