import { z } from "zod"
import { NotificationId, ProjectId, SessionId, TaskId, UserId } from "../Ids.js"

/**
 * What a user is told about (design §1): the agent needs input, a task completed or failed, progress
 * worth a glance, a session ended, a pull request was opened. `priority` marks the ones that want
 * the user's attention now (`needs_input`, `task_complete`, `error`).
 */
export const NotificationType = z.enum([
  "needs_input",
  "task_complete",
  "error",
  "progress",
  "session_ended",
  "pr_created"
])
export type NotificationType = z.infer<typeof NotificationType>

/** The types that are delivered with `priority: true`. */
export const PRIORITY_TYPES: ReadonlySet<NotificationType> = new Set(["needs_input", "task_complete", "error"])

/** A notification as the API and the `notification.created` event show it. */
export const Notification = z.object({
  id: NotificationId,
  userId: UserId,
  projectId: ProjectId,
  taskId: TaskId.nullable(),
  sessionId: SessionId.nullable(),
  type: NotificationType,
  priority: z.boolean(),
  title: z.string(),
  body: z.string().nullable(),
  createdAt: z.iso.datetime(),
  readAt: z.iso.datetime().nullable()
})
export type Notification = z.infer<typeof Notification>

/** A `notifications` row as the ledger returns it (camelCase columns, timestamps as dates). */
export interface NotificationRow {
  readonly id: string
  readonly userId: string
  readonly projectId: string
  readonly taskId: string | null
  readonly sessionId: string | null
  readonly type: NotificationType
  readonly priority: boolean
  readonly title: string
  readonly body: string | null
  readonly createdAt: Date
  readonly readAt: Date | null
}

/** The row as the API and the `notification.created` event show it. */
export const fromRow = (row: NotificationRow): Notification =>
  ({
    ...row,
    createdAt: row.createdAt.toISOString(),
    readAt: row.readAt === null ? null : row.readAt.toISOString()
  }) as Notification
