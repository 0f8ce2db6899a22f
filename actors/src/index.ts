/**
 * The actor runtime (design §5). What it promises, and how:
 *
 * - One message at a time per entity, in stream order: one durable pull consumer per (kind, shard)
 *   on SAM_CMD feeds bounded per-entity mailboxes (a full one stops the pulling). A failed command
 *   is retried in place, so later messages of that entity wait behind it, and dead-lettered after
 *   `maxAttempts`. When a shard changes owner, its consumer is recreated from the ack floor, so every
 *   unacknowledged message is delivered again before anything newer: order survives a takeover.
 * - Effects exactly once: inbox row (`ON CONFLICT DO NOTHING`), state, outbox rows and timers commit
 *   in one transaction that ends with the fence check (`FOR SHARE` on the shard's epoch); the ack
 *   follows the commit. The outbox relay (one per database at a time) and the timer poller publish
 *   with the stored message id as `Nats-Msg-Id`; a repeat after a crash is dropped by the stream or
 *   by the receiver's inbox.
 * - Leases in KV `sam_leases` (`lease.<kind>.<shard>`, compare-and-set, renewed every TTL/5); taking
 *   one raises its epoch in KV and then in Postgres before consuming, so an owner that was frozen or
 *   cut off has its commits refused. Instances announce themselves (`member.<kind>.<instance>`) and
 *   each holds about ceil(shards / instances), releasing extras after draining their mailboxes.
 */
export * as Actor from "./ActorKind.js"
export * as Actors from "./Client.js"
export * as ControlPlane from "./domain/index.js"
export * as ReportIngress from "./domain/ReportIngress.js"
export * as SessionActor from "./domain/SessionActor.js"
export * from "./Errors.js"
export { consumerName, resetConsumer } from "./internal/Consumer.js"
export * as LeasePlan from "./internal/LeasePlan.js"
export * as Retry from "./internal/Retry.js"
export * as NatsAccounts from "./NatsAccounts.js"
export * as ActorRuntime from "./Runtime.js"
export * as ActorStatus from "./Status.js"
