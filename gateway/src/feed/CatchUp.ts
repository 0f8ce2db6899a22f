import { SqlClient } from "@effect/sql"
import { Domain, Kv, type SessionId, Topology } from "@sam/bus"
import { StoredJson } from "@sam/sql"
import { Effect, Option } from "effect"
import { frame } from "./Outbound.js"

/** One transcript entry: its seq, and its JSON as a `session.events` frame lists it (`Api.SessionEventEntry`). */
export interface TranscriptEntry {
  readonly seq: number
  readonly json: string
}

interface Row {
  readonly seq: string
  readonly prompt_epoch: number | null
  readonly payload: string
  /** as `Date.toISOString` writes it, made by Postgres: no Date parsed and formatted per row */
  readonly at: string
  readonly correlation_id: string | null
  /** rows the page took before its byte bound */
  readonly taken: string
}

/**
 * What a subscriber reads before it goes live (design §7): the session's snapshot in KV and its
 * transcript in Postgres, the canonical record, in pages of seq order.
 */
export const make = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const snapshots = yield* Kv.open(Topology.Buckets.sessionState.name, Domain.SessionSnapshot)

  /** The session's snapshot frame; a value that no longer parses is reported as none. */
  const snapshot = (sessionId: SessionId) =>
    snapshots.get(sessionId).pipe(
      Effect.map((entry) => Option.getOrNull(Option.map(entry, (e) => e.value))),
      Effect.catchTag("KvCorrupt", (error) =>
        Effect.logWarning("feed: corrupt session snapshot", error.message).pipe(Effect.as(null))
      ),
      Effect.orDie,
      Effect.map((value) => frame({ type: "snapshot", sessionId, snapshot: value }))
    )

  /**
   * Transcript entries after `afterSeq`, as JSON ready to send: up to `limit` of them and about
   * `maxBytes` (the entry that crosses it is the last; the first always comes), with whether more
   * follow. One row past `limit` is read to tell (so a page that ends the transcript says so, and
   * needs no empty read after it). The stored JSON is spliced in as text (no parse and re-serialize
   * per row) and read without the client's name transforms, so the agent's event reaches the client
   * exactly as it was recorded.
   */
  const page = (sessionId: string, afterSeq: number, limit: number, maxBytes: number) =>
    sql<Row>`
      SELECT seq, prompt_epoch, payload, correlation_id, at, taken FROM (
        SELECT seq, prompt_epoch, payload, correlation_id, at, count(*) OVER () AS taken,
          sum(octet_length(payload)) OVER (ORDER BY seq) - octet_length(payload) AS before
        FROM (
          SELECT seq, prompt_epoch, payload::text AS payload, correlation_id,
            to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at
          FROM session_events WHERE session_id = ${sessionId} AND seq > ${afterSeq} ORDER BY seq LIMIT ${limit + 1}
        ) rows
      ) sized WHERE before < ${maxBytes} ORDER BY seq`.withoutTransform.pipe(
      Effect.orDie,
      Effect.map((rows) => ({
        more: rows.length > 0 && (Number(rows[0]!.taken) > limit || rows.length < Number(rows[0]!.taken)),
        entries: rows.slice(0, limit).map((row): TranscriptEntry => {
          const seq = Number(row.seq)
          const json = `{"seq":${seq},"promptEpoch":${row.prompt_epoch ?? 0},"event":${StoredJson.decode(row.payload)},"at":"${
            row.at
          }"${row.correlation_id === null ? "" : `,"correlationId":${JSON.stringify(row.correlation_id)}`}}`
          return { seq, json }
        })
      }))
    )

  return { snapshot, page }
})

export type CatchUp = Effect.Effect.Success<typeof make>
