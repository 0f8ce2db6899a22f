import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream"
import { nanos } from "@nats-io/nats-core"
import { type Nats, NatsError, Subjects, Topology } from "@sam/bus"
import { Effect } from "effect"
import type { ShardSettings } from "./Settings.js"

export const STREAM = Topology.Streams.SAM_CMD.name

/** The durable pull consumer of one shard of one kind. */
export const consumerName = (kind: string, shard: number) => `actor-${Subjects.token(kind)}-${shard}`

export const jsError = (what: string) => (cause: unknown) =>
  new NatsError({ reason: "JetStream", message: `${what}: ${cause instanceof Error ? cause.message : cause}`, cause })

/**
 * Recreate the shard's consumer so it starts right after its ack floor. A new owner thereby gets
 * every unacknowledged message again, in stream order and before anything newer, which keeps each
 * entity's order across a takeover (already-applied ones are inbox duplicates); and the previous
 * owner's pending pulls die with the old consumer.
 */
export const resetConsumer = (nats: Nats["Type"], kind: string, shard: number, settings: ShardSettings) =>
  Effect.gen(function* () {
    const name = consumerName(kind, shard)
    const info = yield* Effect.tryPromise({
      try: () =>
        nats.jsm.consumers.info(STREAM, name).catch((error: unknown) => {
          if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound) return undefined
          throw error
        }),
      catch: jsError(`consumer info ${name}`)
    })
    const floor = info?.ack_floor.stream_seq ?? 0
    if (info !== undefined) {
      yield* Effect.tryPromise({ try: () => nats.jsm.consumers.delete(STREAM, name), catch: jsError(`delete ${name}`) })
    }
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
