import type * as Api from "@sam/bus/api"

/**
 * Notifications in the API's order: the newest event first (a notification's time is its event's, not when the
 * control plane got to it), then the larger id.
 */
export const newestFirst = (a: Api.Notification, b: Api.Notification) =>
  Date.parse(b.createdAt) - Date.parse(a.createdAt) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)
