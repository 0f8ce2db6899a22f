import { SqlClient } from "@effect/sql"
import { Actor } from "@sam/actors"
import { defineMessage } from "@sam/bus"
import { Effect } from "effect"
import { z } from "zod"

/**
 * A test actor whose state makes the runtime's promises checkable: `count` counts applications,
 * `lastSeq` must grow by one per increment (publish order), `violations` counts the ones that did
 * not, `fired` counts timer deliveries. Every increment also publishes an event through the outbox.
 */
export const Increment = defineMessage(
  "counter.increment",
  z.object({ seq: z.number().int().positive(), slowMs: z.number().int().nonnegative().optional() }),
  { durable: true }
)
export const Fail = defineMessage("counter.fail", z.object({ why: z.string() }), { durable: true })
export const Remind = defineMessage("counter.remind", z.object({ afterMs: z.number().int().positive() }), {
  durable: true
})
export const Reminded = defineMessage("counter.reminded", z.object({}), { durable: true })
export const Incremented = defineMessage("counter.incremented", z.object({ seq: z.number(), count: z.number() }), {
  durable: true
})

export interface Counter {
  readonly count: number
  readonly lastSeq: number
  readonly violations: number
  readonly fired: number
}

export const EntityId = z.string().regex(/^e[0-9a-z]{1,40}$/)

export const createCounterTable = (sql: SqlClient.SqlClient) =>
  sql`CREATE TABLE IF NOT EXISTS test_counters (
    kind text NOT NULL, id text NOT NULL, count integer NOT NULL, last_seq integer NOT NULL,
    violations integer NOT NULL, fired integer NOT NULL, PRIMARY KEY (kind, id))`

export interface CounterHooks {
  /** called when a slow increment starts, before its pause (inside the transaction) */
  readonly onSlow?: (id: string, messageId: string) => void
  /** called on every load from the database */
  readonly onLoad?: (id: string) => void
  /** start a command that follows another of the entity in one transaction from that one's state (`carry`) */
  readonly carry?: boolean
  /** read a group's entities in one statement and write their saves in one (`loadMany`, `saveMany`) */
  readonly batched?: boolean
  /** called on every read of several entities at once (`loadMany`), with how many */
  readonly onLoadMany?: (entities: number) => void
  /** commit a group in one statement (`commitsInOneStatement`; with `batched`, whose `saveMany` returns statements) */
  readonly inOne?: boolean
  /** called on every write of several commands' saves at once (`saveMany`), with how many */
  readonly onSaveMany?: (saves: number) => void
  /** an increment starts from the state this process last committed, at the shard's epoch (`keep`) */
  readonly keep?: boolean
}

const fresh: Counter = { count: 0, lastSeq: 0, violations: 0, fired: 0 }

export const counterKind = (name: string, shards: number, hooks: CounterHooks = {}) => {
  // Read outside any transaction when a group commits in one statement: a row lock would be a transaction of its
  // own (flushed to the disk), and the shard's fence keeps other owners out.
  const lock = hooks.inOne === true ? "" : "FOR UPDATE"
  return Actor.make({
    name,
    shards,
    id: EntityId,
    commands: [Increment, Fail, Remind, Reminded],
    load: (id) =>
      Effect.gen(function* () {
        hooks.onLoad?.(id)
        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql<Counter>`
          SELECT count, last_seq, violations, fired FROM test_counters WHERE kind = ${name} AND id = ${id} ${sql.literal(lock)}`
        return rows[0] ?? fresh
      }),
    save: (id, state) =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* sql`
          INSERT INTO test_counters (kind, id, count, last_seq, violations, fired)
          VALUES (${name}, ${id}, ${state.count}, ${state.lastSeq}, ${state.violations}, ${state.fired})
          ON CONFLICT (kind, id) DO UPDATE SET count = EXCLUDED.count, last_seq = EXCLUDED.last_seq,
            violations = EXCLUDED.violations, fired = EXCLUDED.fired`
      }),
    ...(hooks.carry === true ? { carry: (state: Counter) => state } : {}),
    ...(hooks.keep === true
      ? {
          keep: {
            remember: (state: Counter) => state,
            reuse: (state: Counter, command: { readonly type: string }) =>
              command.type === "counter.increment" ? state : undefined
          }
        }
      : {}),
    ...(hooks.inOne === true ? { commitsInOneStatement: true } : {}),
    ...(hooks.batched === true
      ? {
          loadMany: (entries: ReadonlyArray<{ readonly id: string }>) =>
            Effect.gen(function* () {
              const ids = entries.map((entry) => entry.id)
              hooks.onLoadMany?.(ids.length)
              const sql = yield* SqlClient.SqlClient
              const rows = yield* sql<Counter & { readonly id: string }>`
                SELECT id, count, last_seq, violations, fired FROM test_counters
                WHERE kind = ${name} AND id = ANY(${ids}::text[]) ${sql.literal(lock)}`
              const states = new Map<string, Counter>(ids.map((id) => [id, fresh]))
              for (const { id, ...state } of rows) states.set(id, state)
              return states
            }),
          saveMany: (entries: ReadonlyArray<{ readonly id: string; readonly state: Counter }>) =>
            Effect.gen(function* () {
              hooks.onSaveMany?.(entries.length)
              // an entity's last state is what its saves, one after another, would leave
              const last = new Map(entries.map((entry) => [entry.id, entry.state]))
              const ids = [...last.keys()]
              const states = [...last.values()]
              const sql = yield* SqlClient.SqlClient
              // left to the runtime: it runs it in its transaction's last statement, or before a load that follows it
              return [
                sql`
                INSERT INTO test_counters (kind, id, count, last_seq, violations, fired)
                SELECT ${name}, * FROM unnest(${ids}::text[], ${states.map((s) => s.count)}::int[],
                  ${states.map((s) => s.lastSeq)}::int[], ${states.map((s) => s.violations)}::int[],
                  ${states.map((s) => s.fired)}::int[])
                ON CONFLICT (kind, id) DO UPDATE SET count = EXCLUDED.count, last_seq = EXCLUDED.last_seq,
                  violations = EXCLUDED.violations, fired = EXCLUDED.fired`
              ]
            })
        }
      : {}),
    handle: (state, command, context) => {
      switch (command.type) {
        case "counter.increment": {
          const next = {
            ...state,
            count: state.count + 1,
            lastSeq: command.body.seq,
            violations: state.violations + (command.body.seq === state.lastSeq + 1 ? 0 : 1)
          }
          const pause =
            command.body.slowMs === undefined
              ? Effect.void
              : Effect.sync(() => hooks.onSlow?.(context.id, command.id)).pipe(
                  Effect.zipRight(Effect.sleep(command.body.slowMs))
                )
          return pause.pipe(
            Effect.as({
              state: next,
              events: [
                Actor.event("test", name, context.id, Incremented.make({ seq: command.body.seq, count: next.count }))
              ],
              reply: next.count
            })
          )
        }
        case "counter.fail":
          return Effect.fail(new Error(`told to fail: ${command.body.why}`))
        case "counter.remind":
          return Effect.succeed({
            state,
            timers: [Actor.Timer.set("remind", command.body.afterMs, Reminded.make({}))]
          })
        case "counter.reminded":
          return Effect.succeed({ state: { ...state, fired: state.fired + 1 } })
      }
    }
  })
}
