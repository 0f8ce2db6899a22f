import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream"
import { nanos } from "@nats-io/nats-core"
import { Consume, Nats, NatsError, Subjects, Topology } from "@sam/bus"
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
 * Replace the shard's consumers (any epoch) by one for `epoch`, after their ack floor
 * (`Consume.replaceConsumers`): a new owner gets every unacknowledged message again, in stream order and
 * before anything newer, which keeps each entity's order across a takeover (already-applied ones are
 * inbox duplicates). Returns the floor it starts after.
 */
export const resetConsumer = (
  nats: Nats["Type"],
  kind: string,
  shard: number,
  epoch: number,
  settings: Pick<ShardSettings, "ackWaitMs" | "maxAckPending">
) =>
  Consume.replaceConsumers(
    STREAM,
    (name) => isShardConsumer(name, kind, shard),
    {
      durable_name: consumerName(kind, shard, epoch),
      filter_subject: Subjects.commandShard(kind, shard),
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(settings.ackWaitMs),
      max_deliver: -1,
      max_ack_pending: settings.maxAckPending
    },
    DeliverPolicy.All
  ).pipe(
    Effect.map((previous) => Math.max(0, ...previous.map((consumer) => consumer.floor))),
    Effect.provideService(Nats, nats)
  )
