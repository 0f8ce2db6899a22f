import { DiscardPolicy, RetentionPolicy, StorageType } from "@nats-io/jetstream"

/**
 * The bus topology, declared once. `provision` (Provision.ts) makes the server match it; nothing
 * else creates streams or buckets.
 */

const SECOND_NS = 1_000_000_000
const DAY_NS = 86_400 * SECOND_NS
const GiB = 1024 ** 3

export interface StreamSpec {
  readonly name: string
  readonly description: string
  readonly subjects: ReadonlyArray<string>
  readonly retention: RetentionPolicy
  readonly storage: StorageType
  readonly discard: DiscardPolicy
  /** nanoseconds; 0 keeps messages until the limits below apply */
  readonly max_age: number
  /** nanoseconds within which a repeated `Nats-Msg-Id` is dropped */
  readonly duplicate_window: number
  readonly max_msgs_per_subject: number
  readonly max_msg_size: number
  /**
   * the most bytes the stream keeps; past it the oldest messages go (`discard: old`), so a node that
   * floods its reports can fill this stream but never the server's store (ADR 0050)
   */
  readonly max_bytes: number
}

const stream = (
  name: string,
  description: string,
  subjects: ReadonlyArray<string>,
  maxAgeDays: number,
  maxGiB: number
): StreamSpec => ({
  name,
  description,
  subjects,
  retention: RetentionPolicy.Limits,
  storage: StorageType.File,
  discard: DiscardPolicy.Old,
  max_age: maxAgeDays * DAY_NS,
  duplicate_window: 120 * SECOND_NS,
  max_msgs_per_subject: -1,
  max_msg_size: 1024 * 1024,
  max_bytes: maxGiB * GiB
})

/**
 * Each stream's size limit is far below nats-server's `max_file_store` (20 GB, infra's NatsAuth.ts) and
 * together they leave room for the KV buckets: a full stream loses its oldest messages, which the
 * consumers have long handled, while a full store would refuse every publish of the installation.
 */
export const Streams = {
  SAM_CMD: stream("SAM_CMD", "Commands to control-plane actors", ["sam.cmd.>"], 7, 4),
  SAM_EVT: stream("SAM_EVT", "Domain events from actors", ["sam.evt.>"], 7, 2),
  SAM_NODE: stream("SAM_NODE", "Commands to node vm-agents", ["sam.node.*.cmd.>"], 7, 1),
  SAM_AGENT: stream("SAM_AGENT", "Reports from node vm-agents", ["sam.agent.*.rpt.>"], 7, 2)
} as const satisfies Record<string, StreamSpec>

export interface BucketSpec {
  readonly name: string
  readonly description: string
  /** values kept per key */
  readonly history: number
  /** milliseconds after which an untouched key disappears; 0 for never */
  readonly ttlMs: number
  readonly storage: StorageType
}

export const Buckets = {
  sessionState: {
    name: "sam_session_state",
    description: "Session-state snapshots for reconnect catch-up",
    history: 5,
    ttlMs: 0,
    storage: StorageType.File
  },
  leases: {
    name: "sam_leases",
    description: "Actor shard leases with fencing epochs",
    history: 1,
    ttlMs: 0,
    storage: StorageType.File
  },
  nodeHealth: {
    name: "sam_node_health",
    description: "Latest heartbeat per node",
    history: 1,
    ttlMs: 3_600_000,
    storage: StorageType.File
  }
} as const satisfies Record<string, BucketSpec>

/** The stream behind a KV bucket, as the server stores it. */
export const bucketStreamName = (bucket: string) => `KV_${bucket}`

/** The fields of a bucket's backing stream that provisioning compares. */
export const bucketStreamFields = (spec: BucketSpec) => ({
  description: spec.description,
  max_msgs_per_subject: spec.history,
  max_age: spec.ttlMs * 1_000_000,
  storage: spec.storage
})
