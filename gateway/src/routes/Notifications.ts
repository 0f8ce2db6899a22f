import { Api } from "@sam/bus"
import * as Route from "../Route.js"
import * as Notifications from "../services/Notifications.js"

const E = Api.NotificationEndpoints

export const routes = [
  Route.make(E.unreadCounts, ({ principal }) => Notifications.unreadCounts(principal)),
  Route.make(E.listNotifications, ({ principal, query }) => Notifications.list(principal, query)),
  Route.make(E.readAllNotifications, ({ principal }) => Notifications.markAllRead(principal)),
  Route.make(E.readNotification, ({ principal, params }) => Notifications.markRead(principal, params.notificationId))
]
