import { SqlClient } from "@effect/sql"
import { type Api, Domain, type ProjectId, UserId } from "@sam/bus"
import { Effect } from "effect"
import { z } from "zod"
import { requireMember, requireOwner } from "../Access.js"
import { ApiError } from "../ApiError.js"
import type { Principal } from "../Auth.js"
import * as Command from "../Command.js"

const C = Domain.ControlProtocol

const MemberRow = z.object({
  userId: UserId,
  login: z.string().nullable(),
  displayName: z.string(),
  githubLogin: z.string().nullable(),
  role: z.enum(["owner", "member"]),
  addedAt: z.date()
})
type MemberRow = z.output<typeof MemberRow>
const decodeMembers = Domain.Rows.decodeRows(MemberRow, "member")

const toMember = (row: MemberRow): z.input<typeof Api.Member> => ({
  userId: row.userId,
  login: row.login,
  displayName: row.displayName,
  githubLogin: row.githubLogin,
  role: row.role,
  addedAt: row.addedAt.toISOString()
})

const selectMembers = (sql: SqlClient.SqlClient, projectId: ProjectId, userId?: string) =>
  sql`
    SELECT u.id AS user_id, u.login, u.display_name, u.github_login, m.role, m.created_at AS added_at
    FROM project_members m JOIN users u ON u.id = m.user_id
    WHERE m.project_id = ${projectId} ${userId === undefined ? sql`` : sql`AND m.user_id = ${userId}`}
    ORDER BY m.created_at, u.id`.pipe(Effect.orDie, Effect.map(decodeMembers))

export const listMembers = Effect.fn("Members.list")(function* (principal: Principal, projectId: ProjectId) {
  yield* requireMember(principal, projectId)
  const sql = yield* SqlClient.SqlClient
  return { members: (yield* selectMembers(sql, projectId)).map(toMember) }
})

/** The user a request names, by id or by login (local, then GitHub); `not_found` if there is none. */
const resolveUser = (input: z.output<typeof Api.AddMemberRequest>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows =
      "userId" in input
        ? yield* sql<{ id: string }>`SELECT id FROM users WHERE id = ${input.userId}`.pipe(Effect.orDie)
        : yield* sql<{ id: string }>`
            SELECT id FROM users WHERE login = ${input.login.toLowerCase()} OR lower(github_login) = ${input.login.toLowerCase()}
            ORDER BY (login = ${input.login.toLowerCase()}) DESC LIMIT 1`.pipe(Effect.orDie)
    const row = rows[0]
    if (row === undefined) {
      const who = "userId" in input ? input.userId : `login ${input.login}`
      return yield* new ApiError({ code: "not_found", message: `no user ${who}` })
    }
    return row.id
  })

/** Add a member or change a member's role (owners only); the project actor keeps at least one owner. */
export const addMember = Effect.fn("Members.add")(function* (
  principal: Principal,
  projectId: ProjectId,
  input: z.output<typeof Api.AddMemberRequest>
) {
  yield* requireOwner(principal, projectId)
  const userId = yield* resolveUser(input)
  const command = yield* Command.build(() =>
    C.ProjectAddMember.make({
      projectId,
      userId,
      role: input.role,
      by: principal.userId
    })
  )
  yield* Command.ask(Domain.ProjectRef, projectId, command)
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* selectMembers(sql, projectId, userId)
  if (row === undefined) return yield* new ApiError({ code: "conflict", message: `${userId} was removed meanwhile` })
  return toMember(row)
})

/** Remove a member (owners only); the last owner stays (`invalid_state`, reason `last_owner`). */
export const removeMember = Effect.fn("Members.remove")(function* (
  principal: Principal,
  projectId: ProjectId,
  userId: UserId
) {
  yield* requireOwner(principal, projectId)
  const command = yield* Command.build(() => C.ProjectRemoveMember.make({ projectId, userId, by: principal.userId }))
  yield* Command.ask(Domain.ProjectRef, projectId, command)
  return { projectId, userId, removed: true as const }
})
