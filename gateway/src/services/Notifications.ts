import { SqlClient } from "@effect/sql"
import { Api } from "@sam/bus"
import { Effect } from "effect"
import type { z } from "zod"
import { ApiError } from "../ApiError.js"
import type { Principal } from "../Auth.js"

type NotificationRow = Api.NotificationRow

const COLUMNS =
  "n.id, n.user_id, n.project_id, n.task_id, n.session_id, n.type, n.priority, n.title, n.body, n.created_at, n.read_at"

/**
 * The caller's notifications, of projects they are still a member of: someone removed from a
 * project stops seeing what happens in it, here as everywhere.
 */
const mine = (sql: SqlClient.SqlClient, userId: string) =>
  sql`n.user_id = ${userId} AND EXISTS (
    SELECT 1 FROM project_members m WHERE m.project_id = n.project_id AND m.user_id = ${userId})`

const unreadCount = (sql: SqlClient.SqlClient, userId: string) =>
  sql<{
    n: number
  }>`SELECT count(*)::int AS n FROM notifications n WHERE ${mine(sql, userId)} AND n.read_at IS NULL`.pipe(
    Effect.orDie,
    Effect.map((rows) => rows[0]?.n ?? 0)
  )

/** My unread notifications counted by tab, in one query over the same rows the list shows. */
export const unreadCounts = Effect.fn("Notifications.unreadCounts")(function* (principal: Principal) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ unread: number; priority: number }>`
    SELECT count(*)::int AS unread, (count(*) FILTER (WHERE n.priority))::int AS priority
    FROM notifications n WHERE ${mine(sql, principal.userId)} AND n.read_at IS NULL`.pipe(Effect.orDie)
  const unread = rows[0]?.unread ?? 0
  const priority = rows[0]?.priority ?? 0
  return { unread, priority, updates: unread - priority }
})

export const list = Effect.fn("Notifications.list")(function* (
  principal: Principal,
  query: z.output<typeof Api.ListNotificationsQuery>
) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<NotificationRow>`
    SELECT ${sql.unsafe(COLUMNS)} FROM notifications n
    WHERE ${mine(sql, principal.userId)}
      ${query.unread === true ? sql`AND n.read_at IS NULL` : query.unread === false ? sql`AND n.read_at IS NOT NULL` : sql``}
      ${
        query.before === undefined
          ? sql``
          : sql`AND (n.created_at, n.id) < (SELECT created_at, id FROM notifications WHERE id = ${query.before})`
      }
    ORDER BY n.created_at DESC, n.id DESC
    LIMIT ${query.limit + 1}`.pipe(Effect.orDie)
  const page = rows.slice(0, query.limit)
  return {
    notifications: page.map(Api.fromRow),
    unreadCount: yield* unreadCount(sql, principal.userId),
    nextBefore: rows.length > query.limit ? (page[page.length - 1]?.id ?? null) : null
  }
})

/** Mark one read (again: a no-op that keeps the first time). Someone else's is `not_found`, as is an unknown id. */
export const markRead = Effect.fn("Notifications.markRead")(function* (principal: Principal, notificationId: string) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<NotificationRow>`
    UPDATE notifications n SET read_at = coalesce(n.read_at, now())
    WHERE n.id = ${notificationId} AND ${mine(sql, principal.userId)}
    RETURNING ${sql.unsafe(COLUMNS)}`.pipe(Effect.orDie)
  const row = rows[0]
  if (row === undefined) {
    return yield* new ApiError({ code: "not_found", message: `no notification ${notificationId}` })
  }
  return Api.fromRow(row)
})

export const markAllRead = Effect.fn("Notifications.markAllRead")(function* (principal: Principal) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ id: string }>`
    UPDATE notifications n SET read_at = now()
    WHERE ${mine(sql, principal.userId)} AND n.read_at IS NULL
    RETURNING n.id`.pipe(Effect.orDie)
  return { marked: rows.length, unreadCount: yield* unreadCount(sql, principal.userId) }
})
