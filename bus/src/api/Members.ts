import { z } from "zod"
import { MemberRole } from "../domain/ControlProtocol.js"
import { ProjectId, UserId } from "../Ids.js"
import { endpoint } from "./Endpoint.js"
import { storable } from "./Text.js"

export const Member = z.object({
  userId: UserId,
  login: z.string().nullable(),
  displayName: z.string(),
  githubLogin: z.string().nullable(),
  role: MemberRole,
  addedAt: z.iso.datetime()
})
export type Member = z.infer<typeof Member>

export const MemberList = z.object({ members: z.array(Member) })

/** Who to add, by user id or by login (the local login or a GitHub login), and as what. */
export const AddMemberRequest = z.union([
  z.object({ userId: UserId, role: MemberRole.default("member") }),
  z.object({ login: storable(z.string().trim().min(1).max(64)), role: MemberRole.default("member") })
])

const ProjectParams = z.object({ projectId: ProjectId })
const MemberParams = z.object({ projectId: ProjectId, userId: UserId })

export const MemberEndpoints = {
  listMembers: endpoint({
    method: "GET",
    path: "/projects/:projectId/members",
    summary: "The members of a project, with their roles",
    tag: "projects",
    params: ProjectParams,
    response: MemberList
  }),
  addMember: endpoint({
    method: "POST",
    path: "/projects/:projectId/members",
    summary: "Add a member, or change a member's role (owners only; a project keeps at least one owner)",
    tag: "projects",
    params: ProjectParams,
    body: AddMemberRequest,
    response: Member,
    status: 201
  }),
  removeMember: endpoint({
    method: "DELETE",
    path: "/projects/:projectId/members/:userId",
    summary: "Remove a member (owners only; the last owner cannot be removed)",
    tag: "projects",
    params: MemberParams,
    response: z.object({ projectId: ProjectId, userId: UserId, removed: z.literal(true) })
  })
}
