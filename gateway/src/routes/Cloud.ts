import { Api } from "@sam/bus"
import * as Route from "../Route.js"
import * as CloudCredentials from "../services/CloudCredentials.js"

const E = Api.CloudEndpoints

export const routes = [
  Route.make(E.listCloudCredentials, ({ principal }) => CloudCredentials.list(principal)),
  Route.make(E.setHetznerToken, ({ principal, body }) => CloudCredentials.setHetzner(principal, body)),
  Route.make(E.deleteHetznerToken, ({ principal }) => CloudCredentials.removeHetzner(principal))
]
