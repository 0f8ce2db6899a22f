import { SqlClient } from "@effect/sql"
import { ActorMessages, Api, answerEach, Domain, Nats, Publish, Subjects } from "@sam/bus"
import { Effect } from "effect"
import { BootLimits } from "./BootLimiter.js"

/** At most this many lines of boot log per node: a flood from a token's holder ends here. */
export const MAX_LINES = Number(process.env.SAM_NODE_BOOT_LOG_MAX_LINES ?? 1000)

/**
 * Stores a node's boot-log lines (in the caller's transaction): a numbered line that is stored already is
 * skipped, and nothing past `MAX_LINES` for the node is kept. Returns the lines that are new, in order.
 */
export const store = Effect.fn("NodeBootLog.store")(function* (
  nodeId: string,
  entries: ReadonlyArray<Api.BootLogEntry>
) {
  const sql = yield* SqlClient.SqlClient
  if (entries.length === 0) return []
  const [count] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM node_boot_log WHERE node_id = ${nodeId}`
  let room = MAX_LINES - (count?.n ?? 0)
  const stored: Array<Api.BootLogEntry> = []
  // Numbered lines in their order, then the unnumbered ones as they came.
  const ordered = [...entries.filter((e) => e.seq !== undefined)].sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0))
  for (const entry of [...ordered, ...entries.filter((e) => e.seq === undefined)]) {
    if (room <= 0) break
    const inserted =
      entry.seq === undefined
        ? yield* sql`
          INSERT INTO node_boot_log (node_id, at, step, status, message)
          VALUES (${nodeId}, ${new Date(entry.at)}, ${entry.step}, ${entry.status}, ${entry.message}) RETURNING id`
        : yield* sql`
          INSERT INTO node_boot_log (node_id, seq, at, step, status, message)
          VALUES (${nodeId}, ${entry.seq}, ${new Date(entry.at)}, ${entry.step}, ${entry.status}, ${entry.message})
          ON CONFLICT (node_id, seq) WHERE seq IS NOT NULL DO NOTHING RETURNING id`
    if (inserted.length > 0) {
      stored.push(entry)
      room -= 1
    }
  }
  return stored
})

/**
 * Tells the feed about lines just stored (after their commit): `node.bootlog` on the node's system subject,
 * volatile; a page that missed it reads the boot log again when its feed (re)connects.
 */
export const announce = (nodeId: string, entries: ReadonlyArray<Api.BootLogEntry>) =>
  entries.length === 0
    ? Effect.void
    : Publish.emit(
        Subjects.event(ActorMessages.SYSTEM_PROJECT, "node", nodeId, Domain.NodeBootLogEvent.type),
        Domain.NodeBootLogEvent.make({ nodeId, entries: [...entries] })
      ).pipe(Effect.catchAll((e) => Effect.logWarning(`node boot: the live boot log of ${nodeId}: ${e.message}`)))

/** A node's boot log, oldest first. */
export const read = Effect.fn("NodeBootLog.read")(function* (nodeId: string) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{
    seq: number | null
    at: Date
    step: string
    status: "started" | "completed" | "failed" | "info"
    message: string
  }>`SELECT seq, at, step, status, message FROM node_boot_log WHERE node_id = ${nodeId}
    ORDER BY seq NULLS LAST, id`
  return rows.map(({ seq, ...r }) => ({ ...(seq === null ? {} : { seq }), ...r, at: r.at.toISOString() }))
})

/**
 * Answers `sam.agent.<nodeId>.bootlog`: the lines a connected node's boot log file gained after its exchange
 * (the token is spent by then). The node id comes from the subject, which only that node's account can
 * publish on; the node must be live; the same limits as the posts before the exchange.
 */
export const serve = Effect.fn("NodeBootLog.serve")(function* () {
  const { nc } = yield* Nats
  const sql = yield* SqlClient.SqlClient
  const { logAppends } = yield* BootLimits
  const sub = nc.subscribe("sam.agent.*.bootlog", { queue: "sam-node-bootlog" })
  yield* Effect.addFinalizer(() => Effect.sync(() => sub.unsubscribe()))
  const answer = (subject: string, reply: string | undefined, data: Uint8Array) =>
    Effect.gen(function* () {
      if (reply === undefined || !reply.startsWith("_R_.")) return
      const respond = (body: Api.NodeBootLogReply) => Effect.sync(() => nc.publish(reply, JSON.stringify(body)))
      const nodeId = subject.split(".")[2] ?? ""
      if (!Subjects.isToken(nodeId)) return yield* respond({ ok: false, error: "bad subject" })
      const report = Api.NodeBootLogReport.safeParse(
        yield* Effect.try(() => JSON.parse(new TextDecoder().decode(data))).pipe(Effect.orElseSucceed(() => undefined))
      )
      if (!report.success) return yield* respond({ ok: false, error: "expected {entries} (1 to 50 numbered lines)" })
      if (logAppends.blocked(nodeId) !== undefined)
        return yield* respond({ ok: false, error: "too many boot-log reports" })
      logAppends.count(nodeId)
      const stored = yield* sql.withTransaction(
        Effect.gen(function* () {
          const nodes = yield* sql<{ status: string }>`SELECT status FROM nodes WHERE id = ${nodeId} FOR SHARE`
          const status = nodes[0]?.status
          if (status !== "provisioning" && status !== "running" && status !== "warm") return undefined
          return yield* store(nodeId, report.data.entries)
        })
      )
      if (stored === undefined) return yield* respond({ ok: false, error: "this node is not live" })
      yield* announce(nodeId, stored)
      yield* respond({ ok: true, stored: stored.length })
    }).pipe(Effect.catchAllCause((cause) => Effect.logError("node boot-log report failed", cause)))
  yield* answerEach(sub, "NodeBootLog.answer", answer)
})
