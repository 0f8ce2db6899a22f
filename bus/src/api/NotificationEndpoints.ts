import { z } from "zod"
import { NotificationId } from "../Ids.js"
import { endpoint } from "./Endpoint.js"
import { Notification } from "./Notifications.js"
import { flag, limit } from "./Paging.js"

export const ListNotificationsQuery = z.object({
  /** only the ones not read yet */
  unread: flag.optional(),
  limit: limit(50, 200),
  before: NotificationId.optional()
})

/**
 * My notifications, newest first, of projects I am still a member of. `unreadCount` counts all my
 * unread ones, not only this page's.
 */
export const NotificationList = z.object({
  notifications: z.array(Notification),
  unreadCount: z.number().int().nonnegative(),
  nextBefore: NotificationId.nullable()
})

export const ReadAllResult = z.object({
  marked: z.number().int().nonnegative(),
  unreadCount: z.number().int().nonnegative()
})

/** How many of my notifications are unread, by tab: the bell's count comes from here, not from a page. */
export const UnreadCounts = z.object({
  unread: z.number().int().nonnegative(),
  priority: z.number().int().nonnegative(),
  updates: z.number().int().nonnegative()
})
export type UnreadCounts = z.infer<typeof UnreadCounts>

export const NotificationEndpoints = {
  unreadCounts: endpoint({
    method: "GET",
    path: "/notifications/unread-count",
    summary: "How many of my notifications are unread: all, Priority and Updates",
    tag: "notifications",
    response: UnreadCounts
  }),
  listNotifications: endpoint({
    method: "GET",
    path: "/notifications",
    summary: "My notifications, newest first, with how many are unread",
    tag: "notifications",
    query: ListNotificationsQuery,
    response: NotificationList
  }),
  readNotification: endpoint({
    method: "POST",
    path: "/notifications/:notificationId/read",
    summary: "Mark one of my notifications read",
    tag: "notifications",
    params: z.object({ notificationId: NotificationId }),
    response: Notification
  }),
  readAllNotifications: endpoint({
    method: "POST",
    path: "/notifications/read-all",
    summary: "Mark all my notifications read",
    tag: "notifications",
    response: ReadAllResult
  })
}
