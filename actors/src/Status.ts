import { SqlClient } from "@effect/sql"
import { Consume, Kv, Nats, NatsError, Topology } from "@sam/bus"
import { Effect, Option } from "effect"
import { consumerName } from "./internal/Consumer.js"
import { LeaseValue, leasePrefix, MemberValue } from "./internal/LeasePlan.js"

export interface ShardStatus {
  readonly kind: string
  readonly shard: number
  readonly owner: string
  readonly epoch: number
  /** the epoch Postgres accepts commits from */
  readonly fence: number | null
  readonly expiresInMs: number
  /** stored commands the shard's consumer has not delivered yet */
  readonly pending: number
  /** delivered and not yet acknowledged: in mailboxes or being handled */
  readonly inFlight: number
}

export interface Status {
  readonly shards: ReadonlyArray<ShardStatus>
  readonly members: ReadonlyArray<{ readonly kind: string; readonly instance: string; readonly expiresInMs: number }>
  readonly deadLetters: ReadonlyArray<{
    readonly kind: string
    readonly count: number
    readonly reasons: ReadonlyArray<{ readonly reason: string; readonly count: number }>
  }>
  readonly outboxUnsent: number
  readonly timers: number
}

const BUCKET = Topology.Buckets.leases.name
const STREAM = Topology.Streams.SAM_CMD.name

/** Shard owners and epochs (KV), consumer backlogs (JetStream), fences, dead letters, outbox and timers (Postgres). */
export const status = Effect.fn("Actors.status")(function* () {
  const nats = yield* Nats
  const sql = yield* SqlClient.SqlClient
  const now = Date.now()
  const leases = yield* Kv.open(BUCKET, LeaseValue)
  const members = yield* Kv.open(BUCKET, MemberValue)
  const consumers = yield* Effect.tryPromise({
    try: async () => {
      const out = new Map<string, { pending: number; inFlight: number }>()
      for await (const info of Consume.consumersOf(nats.jsm, STREAM)) {
        out.set(info.name, { pending: info.num_pending, inFlight: info.num_ack_pending })
      }
      return out
    },
    catch: (cause) => new NatsError({ reason: "JetStream", message: `list consumers: ${cause}`, cause })
  })
  const fences = yield* sql<{
    kind: string
    shard: number
    epoch: string
  }>`SELECT kind, shard, epoch FROM actor_shard_fences`
  const fenceOf = new Map(fences.map((row) => [`${row.kind}.${row.shard}`, Number(row.epoch)]))
  const shardRows = yield* Effect.forEach(yield* leases.keys(leasePrefix), (key) =>
    leases.get(key).pipe(
      Effect.map((entry) => {
        const [, kind = "", shardText = "0"] = key.split(".")
        const shard = Number(shardText)
        const lease = Option.getOrUndefined(entry)?.value
        const backlog = consumers.get(consumerName(kind, shard, lease?.epoch ?? 0))
        return {
          kind,
          shard,
          owner: lease?.owner ?? "",
          epoch: lease?.epoch ?? 0,
          fence: fenceOf.get(`${kind}.${shard}`) ?? null,
          expiresInMs: lease === undefined ? 0 : Math.max(0, lease.expiresAt - now),
          pending: backlog?.pending ?? 0,
          inFlight: backlog?.inFlight ?? 0
        } satisfies ShardStatus
      }),
      Effect.orElseSucceed(() => undefined)
    )
  )
  const memberRows = yield* Effect.forEach(yield* members.keys("member.>"), (key) =>
    members.get(key).pipe(
      Effect.map((entry) =>
        Option.match(entry, {
          onNone: () => undefined,
          onSome: ({ value }) => ({
            kind: key.split(".")[1] ?? "",
            instance: value.instance,
            expiresInMs: value.expiresAt - now
          })
        })
      ),
      Effect.orElseSucceed(() => undefined)
    )
  )
  const dead = yield* sql<{ kind: string; reason: string; count: string }>`
    SELECT kind, reason, count(*) AS count FROM actor_dead_letters GROUP BY kind, reason ORDER BY kind, reason`
  const [outbox] = yield* sql<{ n: string }>`SELECT count(*) AS n FROM actor_outbox WHERE sent_at IS NULL`
  const [timers] = yield* sql<{ n: string }>`SELECT count(*) AS n FROM actor_timers`
  return {
    shards: shardRows
      .filter((row) => row !== undefined)
      .sort((a, b) => a.kind.localeCompare(b.kind) || a.shard - b.shard),
    members: memberRows.filter((row) => row !== undefined && row.expiresInMs > 0).map((row) => row!),
    deadLetters: [...new Set(dead.map((row) => row.kind))].map((kind) => {
      const reasons = dead
        .filter((row) => row.kind === kind)
        .map((row) => ({ reason: row.reason, count: Number(row.count) }))
      return { kind, count: reasons.reduce((sum, r) => sum + r.count, 0), reasons }
    }),
    outboxUnsent: Number(outbox?.n ?? 0),
    timers: Number(timers?.n ?? 0)
  } satisfies Status
})

/** A plain-text table for the terminal. */
export const render = (s: Status): string => {
  const lines = ["kind        shard  owner                                   epoch  fence  lease   pending  in-flight"]
  for (const row of s.shards) {
    const lease =
      row.owner === "" ? "free" : row.expiresInMs > 0 ? `${(row.expiresInMs / 1000).toFixed(1)}s` : "expired"
    lines.push(
      `${row.kind.padEnd(11)} ${String(row.shard).padStart(5)}  ${(row.owner || "-").padEnd(38)} ${String(
        row.epoch
      ).padStart(
        6
      )} ${String(row.fence ?? "-").padStart(6)}  ${lease.padEnd(7)} ${String(row.pending).padStart(7)} ${String(
        row.inFlight
      ).padStart(10)}`
    )
  }
  if (s.shards.length === 0) lines.push("(no shard leases yet: is a control plane running?)")
  lines.push("", `instances: ${s.members.map((m) => `${m.instance} (${m.kind})`).join(", ") || "none alive"}`)
  lines.push(
    `dead letters: ${
      s.deadLetters
        .map((d) => `${d.kind} ${d.count} (${d.reasons.map((r) => `${r.reason} ${r.count}`).join(", ")})`)
        .join(", ") || "none"
    }`,
    `outbox unsent: ${s.outboxUnsent} · timers pending: ${s.timers}`
  )
  return lines.join("\n")
}
