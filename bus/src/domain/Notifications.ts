import { z } from "zod"
import { Notification } from "../api/Notifications.js"
import { defineMessage } from "../Envelope.js"
import { type MessageId, TaskId } from "../Ids.js"
import { event } from "../Subjects.js"

/**
 * Notification events on `sam.evt.<projectId>.notification.<ntfId>.notification.created` (stream
 * SAM_EVT), published by the control plane's notifications reactor after the row is stored. The
 * envelope id is derived from the notification id (`notificationMessageId`), so the reactor handling
 * its source event again publishes nothing new within the stream's duplicate window; after it, a
 * consumer may see the same envelope id twice and must keep the first.
 */
export const NotificationCreated = defineMessage("notification.created", z.object({ notification: Notification }), {
  durable: true
})

export const notificationSubject = (projectId: string, notificationId: string) =>
  event(projectId, "notification", notificationId, NotificationCreated.type)

/** `ntf_x` → `msg_x`: one notification, one message id. */
export const notificationMessageId = (notificationId: string) =>
  `msg_${notificationId.slice("ntf_".length)}` as MessageId

/**
 * A pull request was opened for a task's branch, on `sam.evt.<projectId>.task.<taskId>.task.pull-request`.
 * The notifications reactor turns it into `pr_created`. Nothing publishes it yet: the GitHub step
 * of the task flow will, once it exists.
 */
export const PullRequestOpened = defineMessage(
  "task.pull-request",
  z.object({
    taskId: TaskId,
    url: z.url(),
    number: z.number().int().positive().optional(),
    branch: z.string().max(255).optional()
  }),
  { durable: true }
)
