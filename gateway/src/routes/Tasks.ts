import { Api } from "@sam/bus"
import * as Route from "../Route.js"
import * as Tasks from "../services/Tasks.js"

const E = Api.TaskEndpoints

export const routes = [
  Route.make(E.listTasks, ({ principal, params, query }) => Tasks.listTasks(principal, params.projectId, query)),
  Route.make(E.getTask, ({ principal, params }) => Tasks.getTaskDetail(principal, params.taskId)),
  Route.make(E.createTask, ({ principal, params, body }) => Tasks.createTask(principal, params.projectId, body)),
  Route.make(E.cancelTask, ({ principal, params, body }) => Tasks.cancelTask(principal, params.taskId, body)),
  Route.make(E.retryTask, ({ principal, params }) => Tasks.retryTask(principal, params.taskId))
]
