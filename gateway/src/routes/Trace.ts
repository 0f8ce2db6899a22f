import { SqlClient } from "@effect/sql"
import { Api } from "@sam/bus"
import { Effect } from "effect"
import { taskProject } from "../Access.js"
import type { Principal } from "../Auth.js"
import * as Route from "../Route.js"

/** At most this many requests (the latest) and hops per request are shown. */
const MAX_REQUESTS = 50
const MAX_HOPS = 200

/**
 * The hops of a task's requests, from the actors' inbox rows (migration 0016): the correlation ids of
 * the commands its task and session actors applied, then every command applied under those ids,
 * grouped per entity and type. A member of the task's project may read it.
 */
export const taskTrace = Effect.fn("Trace.task")(function* (principal: Principal, taskId: string) {
  yield* taskProject(principal, taskId)
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{
    correlationId: string
    kind: string
    entityId: string
    type: string
    count: string
    first: Date
    last: Date
  }>`
    WITH requests AS (
      SELECT DISTINCT i.correlation_id FROM actor_inbox i
      WHERE i.correlation_id IS NOT NULL AND (
        (i.kind = 'task' AND i.entity_id = ${taskId})
        OR (i.kind = 'session' AND i.entity_id IN (SELECT s.id FROM sessions s WHERE s.task_id = ${taskId})))
    ), latest AS (
      SELECT r.correlation_id FROM requests r
      JOIN LATERAL (SELECT min(processed_at) AS at FROM actor_inbox WHERE correlation_id = r.correlation_id) m ON true
      ORDER BY m.at DESC LIMIT ${MAX_REQUESTS}
    )
    SELECT i.correlation_id, i.kind, i.entity_id, coalesce(i.type, '?') AS type, count(*) AS count,
      min(i.processed_at) AS first, max(i.processed_at) AS last
    FROM actor_inbox i JOIN latest l ON l.correlation_id = i.correlation_id
    GROUP BY i.correlation_id, i.kind, i.entity_id, i.type
    ORDER BY min(i.processed_at)`.pipe(Effect.orDie)
  const requests = new Map<string, { at: Date; hops: Array<Api.TaskTrace["requests"][number]["hops"][number]> }>()
  for (const row of rows) {
    const request = requests.get(row.correlationId) ?? { at: row.first, hops: [] }
    requests.set(row.correlationId, request)
    if (request.hops.length >= MAX_HOPS) continue
    request.hops.push({
      kind: row.kind,
      entityId: row.entityId,
      type: row.type,
      count: Number(row.count),
      firstMs: Math.max(0, row.first.getTime() - request.at.getTime()),
      lastMs: Math.max(0, row.last.getTime() - request.at.getTime())
    })
  }
  return {
    taskId,
    requests: [...requests].map(([correlationId, request]) => ({
      correlationId,
      at: request.at.toISOString(),
      hops: request.hops
    }))
  }
})

export const routes = [
  Route.make(Api.TraceEndpoints.getTaskTrace, ({ principal, params }) => taskTrace(principal, params.taskId))
]
