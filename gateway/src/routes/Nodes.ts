import { Api } from "@sam/bus"
import * as Route from "../Route.js"
import * as Nodes from "../services/Nodes.js"

const E = Api.NodeEndpoints

export const routes = [
  Route.make(E.listNodes, ({ principal }) => Nodes.listNodes(principal)),
  Route.make(E.getNode, ({ principal, params }) => Nodes.getNode(principal, params.nodeId)),
  Route.make(E.stopNode, ({ principal, params }) => Nodes.change(principal, params.nodeId, "stop")),
  Route.make(E.deleteNode, ({ principal, params }) => Nodes.change(principal, params.nodeId, "delete"))
]
