import { type Envelope, Topology } from "@sam/bus"
import { Duration } from "effect"

/** What the runtime reports as it goes: for logs, status and tests. */
export type RuntimeEvent =
  | { readonly _tag: "Acquired"; readonly kind: string; readonly shard: number; readonly epoch: number }
  | { readonly _tag: "Released"; readonly kind: string; readonly shard: number; readonly epoch: number }
  | {
      readonly _tag: "Lost"
      readonly kind: string
      readonly shard: number
      readonly epoch: number
      readonly why: string
    }
  | { readonly _tag: "Fenced"; readonly kind: string; readonly shard: number; readonly epoch: number }
  | {
      readonly _tag: "CommitRefused"
      readonly kind: string
      readonly shard: number
      readonly epoch: number
      readonly id: string
      readonly messageId: string
    }
  | {
      readonly _tag: "DeadLettered"
      readonly kind: string
      readonly shard: number
      readonly reason: string
      readonly detail: string
    }

export interface Applied {
  readonly kind: string
  readonly id: string
  readonly envelope: Envelope
  readonly outcome: "applied" | "duplicate"
  /** epoch milliseconds when the handling attempt started and when its commit was acknowledged */
  readonly startedAt: number
  readonly at: number
  readonly committedIn?: CommittedIn
}

/** How a group committed (ADR 0056): in one statement, or in a transaction that claimed its inbox rows first. */
export type CommittedIn = "statement" | "transaction"

export interface RuntimeOptions {
  /** unique per process; default `<host>-<pid>-<random>` */
  readonly instanceId?: string
  /** how long a shard lease lasts without renewal (default 10 s) */
  readonly leaseTtl?: Duration.DurationInput
  /** how often leases are renewed and shards rebalanced (default a fifth of the TTL) */
  readonly renewEvery?: Duration.DurationInput
  /** server redelivery of an unacknowledged command (default 30 s) */
  readonly ackWait?: Duration.DurationInput
  readonly maxAckPending?: number
  /** messages a shard's puller buffers from the server */
  readonly batch?: number
  /** commands waiting for one entity before the shard stops pulling (default 64) */
  readonly mailboxCapacity?: number
  /** most waiting commands of one entity applied in one transaction (group commit; default 64) */
  readonly groupMax?: number
  /** handler attempts (local retries plus redeliveries) before a command is dead-lettered (default 5) */
  readonly maxAttempts?: number
  readonly retryBase?: Duration.DurationInput
  /** Postgres ends a command transaction left idle this long (a frozen owner), releasing its locks */
  readonly idleInTransaction?: Duration.DurationInput
  /**
   * how often the outbox relay and the timer poller look for work when idle (default 500 ms: a due timer fires within
   * half a second, a row no commit published is relayed 2-2.5 s after its commit, and an idle control plane wakes 4
   * times a second for them, not 10)
   */
  readonly pollEvery?: Duration.DurationInput
  /**
   * how long a published outbox row is kept (default 1 h, `SAM_OUTBOX_RETENTION_MS`): long past
   * JetStream's 2-minute duplicate window, so a relay's repeat is still dropped by the server
   */
  readonly outboxRetention?: Duration.DurationInput
  /**
   * how long a handled command's inbox row is kept (default 8 days, `SAM_INBOX_RETENTION_MS`): the row is
   * what makes a command delivered again a no-op, and a command stays in SAM_CMD for its maximum age (7 days),
   * where a shard's new consumer may deliver it again; so at least that plus an hour. `sam trace` reads a
   * task's hops from these rows: a task older than the retention has none left.
   */
  readonly inboxRetention?: Duration.DurationInput
  /** how often published outbox rows and inbox rows older than their retention are deleted (default 60 s) */
  readonly pruneEvery?: Duration.DurationInput
  readonly onEvent?: (event: RuntimeEvent) => void
  readonly onApplied?: (applied: Applied) => void
  /** testing: return true to leave a delivery unacknowledged after its commit (forces redelivery) */
  readonly withholdAck?: (streamSequence: number, deliveryCount: number) => boolean
}

export interface ShardSettings {
  readonly ackWaitMs: number
  readonly maxAckPending: number
  readonly batch: number
  readonly mailboxCapacity: number
  readonly groupMax: number
  readonly maxAttempts: number
  readonly retryBaseMs: number
  readonly drainTimeoutMs: number
  readonly onApplied?: ((applied: Applied) => void) | undefined
  readonly withholdAck?: ((streamSequence: number, deliveryCount: number) => boolean) | undefined
}

export interface Settings {
  readonly instanceId: string
  readonly leaseTtlMs: number
  readonly renewEveryMs: number
  readonly idleInTransactionMs: number
  readonly pollEveryMs: number
  readonly outboxRetentionMs: number
  readonly inboxRetentionMs: number
  readonly pruneEveryMs: number
  readonly shard: ShardSettings
}

const envMs = (name: string) => {
  const value = Number(process.env[name])
  return Number.isFinite(value) && value >= 0 && process.env[name] !== "" ? value : undefined
}

const ms = (input: Duration.DurationInput | undefined, fallback: number) =>
  input === undefined ? fallback : Duration.toMillis(Duration.decode(input))

/** The least an inbox row may be kept: as long as SAM_CMD keeps a command, and an hour more. */
export const MIN_INBOX_RETENTION_MS = Topology.Streams.SAM_CMD.max_age / 1_000_000 + 3_600_000

const inboxRetention = (options: RuntimeOptions) => {
  const value = ms(options.inboxRetention, envMs("SAM_INBOX_RETENTION_MS") ?? 8 * 86_400_000)
  if (value < MIN_INBOX_RETENTION_MS)
    throw new Error(
      `SAM_INBOX_RETENTION_MS is ${value}: at least ${MIN_INBOX_RETENTION_MS} (SAM_CMD keeps a command for 7 days and may deliver it again; its inbox row is what makes that a no-op)`
    )
  return value
}

export const resolve = (options: RuntimeOptions, defaultInstanceId: string): Settings => {
  const leaseTtlMs = ms(options.leaseTtl, 10_000)
  const renewEveryMs = ms(options.renewEvery, Math.max(100, Math.floor(leaseTtlMs / 5)))
  return {
    instanceId: options.instanceId ?? defaultInstanceId,
    leaseTtlMs,
    renewEveryMs,
    idleInTransactionMs: ms(options.idleInTransaction, 30_000),
    pollEveryMs: ms(options.pollEvery, 500),
    outboxRetentionMs: ms(options.outboxRetention, envMs("SAM_OUTBOX_RETENTION_MS") ?? 3_600_000),
    inboxRetentionMs: inboxRetention(options),
    pruneEveryMs: ms(options.pruneEvery, 60_000),
    shard: {
      ackWaitMs: ms(options.ackWait, 30_000),
      maxAckPending: options.maxAckPending ?? 1000,
      batch: options.batch ?? 256,
      mailboxCapacity: options.mailboxCapacity ?? 64,
      groupMax: options.groupMax ?? 64,
      maxAttempts: options.maxAttempts ?? 5,
      retryBaseMs: ms(options.retryBase, 100),
      drainTimeoutMs: Math.max(200, Math.floor(leaseTtlMs / 4)),
      onApplied: options.onApplied,
      withholdAck: options.withholdAck
    }
  }
}
