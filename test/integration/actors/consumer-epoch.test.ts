import { describe, expect, it } from "@effect/vitest"
import { consumerName, resetConsumer } from "@sam/actors"
import { encode, Nats, Subjects, Topology } from "@sam/bus"
import { Effect } from "effect"
import { waitUntil } from "../../src/ActorsHarness.js"
import { Increment } from "../../src/CounterActor.js"
import { natsAdmin, unique } from "../../src/Env.js"

const STREAM = Topology.Streams.SAM_CMD.name

/**
 * The failover test's flake, made deterministic: an owner frozen past its lease still has its pull loop,
 * and after missed heartbeats the client re-pulls its consumer by name. Were the successor's consumer
 * named alike, the stale owner would take messages it can no longer commit, and they would reach the new
 * owner only after `ack_wait`, behind newer ones of the same entity (out of order).
 */
describe("actor runtime: a shard's consumer is bound to its lease epoch", () => {
  it.scopedLive(
    "the previous owner's pull loop gets nothing once the next epoch's consumer replaced its own",
    () =>
      Effect.gen(function* () {
        const nats = yield* Nats
        const kind = unique("k")
        const settings = { ackWaitMs: 30_000, maxAckPending: 100 }
        const publish = (seq: number) =>
          Effect.promise(() => nats.js.publish(Subjects.command(kind, 0, "e1"), encode(Increment.make({ seq })))).pipe(
            Effect.map((ack) => ack.seq)
          )
        yield* resetConsumer(nats, kind, 0, 1, settings)
        const stale = { received: [] as Array<number>, statuses: [] as Array<string> }
        const staleMessages = yield* Effect.acquireRelease(
          Effect.promise(async () => {
            const consumer = await nats.js.consumers.get(STREAM, consumerName(kind, 0, 1))
            return consumer.consume({ max_messages: 10, expires: 2_000, idle_heartbeat: 500 })
          }),
          (messages) => Effect.sync(() => void messages.close().catch(() => undefined))
        )
        void (async () => {
          for await (const status of staleMessages.status()) stale.statuses.push(status.type)
        })()
        void (async () => {
          for await (const msg of staleMessages) stale.received.push(msg.seq)
        })()
        const first = yield* publish(1)
        yield* waitUntil(
          "the first owner pulled the first command",
          Effect.sync(() => stale.received.includes(first)),
          10_000
        )

        // A takeover: the successor replaces the consumer (the first command was never acknowledged).
        const floor = yield* resetConsumer(nats, kind, 0, 2, settings)
        expect(floor).toBe(0)
        const second = yield* publish(2)
        yield* waitUntil(
          "the first owner's pull loop looked for its consumer again",
          Effect.sync(() => stale.statuses.includes("consumer_not_found") || stale.received.length > 1),
          15_000
        )
        const fresh = yield* Effect.promise(async () => {
          const consumer = await nats.js.consumers.get(STREAM, consumerName(kind, 0, 2))
          const batch = await consumer.fetch({ max_messages: 2, expires: 5_000 })
          const seqs: Array<number> = []
          for await (const msg of batch) {
            seqs.push(msg.seq)
            msg.ack()
          }
          return seqs
        })
        // The successor gets the unacknowledged command again, before the newer one.
        expect(fresh).toEqual([first, second])
        expect(stale.received).toEqual([first])
        const names = yield* Effect.promise(async () => {
          const out: Array<string> = []
          for await (const info of nats.jsm.consumers.list(STREAM)) out.push(info.name)
          return out
        })
        expect(names.filter((name) => name.includes(kind))).toEqual([consumerName(kind, 0, 2)])
      }).pipe(Effect.provide(natsAdmin("actors-consumer-epoch"))),
    30_000
  )
})
