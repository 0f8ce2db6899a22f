import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream"
import { nanos } from "@nats-io/nats-core"
import { Consume, type Nats, NatsError, Subjects, Topology } from "@sam/bus"
import { Effect } from "effect"
import type { ShardSettings } from "./Settings.js"

export const STREAM = Topology.Streams.SAM_CMD.name

/**
 * The durable pull consumer of one shard of one kind, for one lease epoch. The epoch is in the name so
 * that an owner that lost the shard without knowing it (frozen, then resumed) cannot pull from its
 * successor's consumer: the client library re-pulls by name after missed heartbeats, and messages it
 * took and never acknowledged would reach the new owner only after `ack_wait`, behind newer ones.
 */
export const consumerName = (kind: string, shard: number, epoch: number) =>
  `${shardConsumerPrefix(kind, shard)}-e${epoch}`

const shardConsumerPrefix = (kind: string, shard: number) => `actor-${Subjects.token(kind)}-${shard}`

/** Whether a consumer of SAM_CMD is one of this shard's (any epoch, or the unversioned name of old). */
export const isShardConsumer = (name: string, kind: string, shard: number) => {
  const prefix = shardConsumerPrefix(kind, shard)
  return name === prefix || (name.startsWith(`${prefix}-e`) && /^[0-9]+$/.test(name.slice(prefix.length + 2)))
}

export const jsError = (what: string) => (cause: unknown) =>
  new NatsError({ reason: "JetStream", message: `${what}: ${cause instanceof Error ? cause.message : cause}`, cause })

/**
 * Replace the shard's consumers by one for `epoch` that starts right after their ack floor. A new owner
 * thereby gets every unacknowledged message again, in stream order and before anything newer, which
 * keeps each entity's order across a takeover (already-applied ones are inbox duplicates); and the
 * previous owner's pulls die with its consumer. A message is acknowledged only once it is committed (or
 * dead-lettered), so every consumer's ack floor is applied: the highest one is where to start.
 */
export const resetConsumer = (
  nats: Nats["Type"],
  kind: string,
  shard: number,
  epoch: number,
  settings: Pick<ShardSettings, "ackWaitMs" | "maxAckPending">
) =>
  Effect.gen(function* () {
    const name = consumerName(kind, shard, epoch)
    const previous = yield* Effect.tryPromise({
      try: async () => {
        const out: Array<{ name: string; floor: number }> = []
        for await (const info of Consume.consumersOf(nats.jsm, STREAM)) {
          if (isShardConsumer(info.name, kind, shard)) out.push({ name: info.name, floor: info.ack_floor.stream_seq })
        }
        return out
      },
      catch: jsError(`list consumers of ${kind}/${shard}`)
    })
    const floor = Math.max(0, ...previous.map((consumer) => consumer.floor))
    yield* Effect.forEach(
      previous,
      (consumer) =>
        Effect.tryPromise({
          try: () =>
            nats.jsm.consumers.delete(STREAM, consumer.name).catch((error: unknown) => {
              if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound) return true
              throw error
            }),
          catch: jsError(`delete ${consumer.name}`)
        }),
      { discard: true }
    )
    yield* Effect.tryPromise({
      try: () =>
        nats.jsm.consumers.add(STREAM, {
          durable_name: name,
          filter_subject: Subjects.commandShard(kind, shard),
          ack_policy: AckPolicy.Explicit,
          ...(floor > 0
            ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: floor + 1 }
            : { deliver_policy: DeliverPolicy.All }),
          ack_wait: nanos(settings.ackWaitMs),
          max_deliver: -1,
          max_ack_pending: settings.maxAckPending
        }),
      catch: jsError(`create consumer ${name}`)
    })
    return floor
  })
