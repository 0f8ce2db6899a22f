import { Api } from "@sam/bus"
import * as Route from "../Route.js"
import * as Workspaces from "../services/Workspaces.js"

const E = Api.WorkspaceEndpoints

export const routes = [
  Route.make(E.listWorkspaces, ({ principal, params, query }) =>
    Workspaces.listWorkspaces(principal, params.projectId, query)
  ),
  Route.make(E.getWorkspace, ({ principal, params }) => Workspaces.getWorkspace(principal, params.workspaceId)),
  Route.make(E.workspaceBootLog, ({ principal, params, query }) =>
    Workspaces.bootLog(principal, params.workspaceId, query)
  ),
  Route.make(E.stopWorkspace, ({ principal, params }) => Workspaces.change(principal, params.workspaceId, "stop")),
  Route.make(E.deleteWorkspace, ({ principal, params }) => Workspaces.change(principal, params.workspaceId, "delete"))
]
