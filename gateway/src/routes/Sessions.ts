import { Api } from "@sam/bus"
import * as Route from "../Route.js"
import * as Sessions from "../services/Sessions.js"

const E = Api.SessionEndpoints

export const routes = [
  Route.make(E.promptSession, ({ principal, params, body }) => Sessions.prompt(principal, params.sessionId, body)),
  Route.make(E.cancelSession, ({ principal, params }) => Sessions.cancel(principal, params.sessionId))
]
