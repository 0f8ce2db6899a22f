import { SqlClient } from "@effect/sql"
import { Domain, Kv, SessionId, Topology } from "@sam/bus"
import { Effect, Option } from "effect"
import { z } from "zod"
import * as Actors from "../Client.js"
import { reconcileIntervalMs } from "./Provisioner.js"

const { ControlProtocol: C } = Domain

/** How far back the first round looks: sessions that ended while the control plane was down or just before. */
const FIRST_ROUND_HOURS = 24
const decodeChecked = Domain.Rows.decodeRows(
  z.object({ id: SessionId, status: Domain.SessionStatus, healing: z.boolean() }),
  "session"
)

/**
 * A session's KV snapshot is written after the command that decided it commits (SessionSnapshots.ts):
 * a control plane stopped in between, or NATS away at that moment, loses the write, and the session
 * would show `prompting` (or `idle` after it ended) until its next command, which an ended session
 * never gets. This check compares snapshots with the ledger at start and every
 * `SAM_RECONCILE_INTERVAL_MS` after: an ended session (in the last day at start, since the last round
 * after) whose snapshot does not say how it ended, and an active one shown working without a heal
 * timer (the command that cancelled it lost its write), are handed to their session actor
 * (`session.check-snapshot`), which owns the snapshot.
 */
export const runSnapshotCheck = Effect.fn("SessionSnapshotCheck.run")(function* (
  session: { readonly name: string; readonly shards: number },
  options: { readonly everyMs?: number } = {}
) {
  const sql = yield* SqlClient.SqlClient
  const store = yield* Kv.open(Topology.Buckets.sessionState.name, Domain.SessionSnapshot)
  const everyMs = options.everyMs ?? reconcileIntervalMs()
  const round = (sinceMs: number) =>
    Effect.gen(function* () {
      const rows = yield* sql`
        SELECT s.id, s.status, EXISTS (
            SELECT 1 FROM actor_timers t WHERE t.kind = ${session.name} AND t.entity_id = s.id AND t.name = 'heal'
          ) AS healing
        FROM sessions s
        WHERE s.status = 'active' OR s.updated_at > now() - make_interval(secs => ${sinceMs / 1000})`.pipe(
        Effect.map(decodeChecked)
      )
      let sent = 0
      for (const row of rows) {
        const entry = yield* store.get(row.id).pipe(Effect.orElseSucceed(() => Option.none()))
        const activity = Option.getOrUndefined(entry)?.value.activity
        const disagrees =
          row.status === "active"
            ? activity !== undefined && Domain.WORKING_ACTIVITIES.has(activity) && !row.healing
            : activity !== Domain.ENDED_SNAPSHOT[row.status].activity
        if (!disagrees) continue
        sent += 1
        yield* Actors.send(session, row.id, C.SessionCheckSnapshot.make({ sessionId: row.id }))
      }
      if (sent > 0) yield* Effect.logWarning(`snapshot check: ${sent} session snapshots disagreed with the ledger`)
    }).pipe(Effect.catchAllCause((cause) => Effect.logError("snapshot check", cause)))
  yield* round(FIRST_ROUND_HOURS * 3_600_000)
  // Each later round looks back over two periods and a minute, so a round that ran late misses nothing.
  yield* round(2 * everyMs + 60_000).pipe(Effect.delay(everyMs), Effect.forever)
})
