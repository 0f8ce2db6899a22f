import { Api } from "@sam/bus"
import * as Route from "../Route.js"
import * as Members from "../services/Members.js"

const E = Api.MemberEndpoints

export const routes = [
  Route.make(E.listMembers, ({ principal, params }) => Members.listMembers(principal, params.projectId)),
  Route.make(E.addMember, ({ principal, params, body }) => Members.addMember(principal, params.projectId, body)),
  Route.make(E.removeMember, ({ principal, params }) =>
    Members.removeMember(principal, params.projectId, params.userId)
  )
]
