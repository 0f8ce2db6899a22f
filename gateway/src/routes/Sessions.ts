import { Api } from "@sam/bus"
import * as Route from "../Route.js"
import * as Permissions from "../services/Permissions.js"
import * as Sessions from "../services/Sessions.js"
import * as SessionViews from "../services/SessionViews.js"

const E = Api.SessionEndpoints

export const routes = [
  Route.make(E.listSessions, ({ principal, params, query }) =>
    SessionViews.listSessions(principal, params.projectId, query)
  ),
  Route.make(E.getSession, ({ principal, params }) => SessionViews.getSession(principal, params.sessionId)),
  Route.make(E.sessionEvents, ({ principal, params, query }) =>
    SessionViews.transcript(principal, params.sessionId, query)
  ),
  Route.make(E.promptSession, ({ principal, params, body }) => Sessions.prompt(principal, params.sessionId, body)),
  Route.make(E.cancelSession, ({ principal, params }) => Sessions.cancel(principal, params.sessionId)),
  Route.make(E.answerPermission, ({ principal, params, body }) =>
    Permissions.answer(principal, params.sessionId, params.requestId, body)
  ),
  Route.make(E.stopSession, ({ principal, params }) => Sessions.stop(principal, params.sessionId))
]
