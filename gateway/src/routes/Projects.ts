import { SqlClient } from "@effect/sql"
import { ControlPlane } from "@sam/actors"
import { Api, Domain, makeId } from "@sam/bus"
import { Effect } from "effect"
import { requireMember, requireOwner } from "../Access.js"
import { ApiError } from "../ApiError.js"
import * as Command from "../Command.js"
import { GatewayConfig } from "../Config.js"
import { OWNER_LOGIN } from "../LocalOwner.js"
import * as RepoUrl from "../RepoUrl.js"
import * as Route from "../Route.js"

interface ProjectRow {
  readonly id: string
  readonly name: string
  readonly repoUrl: string
  readonly defaultBranch: string
  readonly ownerId: string
  readonly role: "owner" | "member"
  readonly permissionPolicy: Domain.ControlProtocol.PermissionPolicy
  readonly permissionTimeoutSeconds: number
  readonly createdAt: Date
}
const toProject = (row: ProjectRow) => ({ ...row, createdAt: row.createdAt.toISOString() })

export const routes = [
  Route.make(Api.ProjectEndpoints.listProjects, ({ principal }) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql<ProjectRow>`
          SELECT p.id, p.name, p.repo_url, p.default_branch, p.owner_id, m.role, p.permission_policy,
            p.permission_timeout_seconds, p.created_at
          FROM projects p JOIN project_members m ON m.project_id = p.id AND m.user_id = ${principal.userId}
          ORDER BY p.created_at`.pipe(Effect.orDie)
      return { projects: rows.map(toProject) }
    })
  ),
  Route.make(Api.ProjectEndpoints.createProject, ({ principal, body }) =>
    Effect.gen(function* () {
      const location = yield* RepoUrl.classify(body.repoUrl)
      if (location._tag === "Local") {
        const sql = yield* SqlClient.SqlClient
        const [caller] = yield* sql<{ login: string | null }>`
          SELECT login FROM users WHERE id = ${principal.userId}`.pipe(Effect.orDie)
        const { localRepos } = yield* GatewayConfig
        yield* RepoUrl.checkLocal(localRepos ?? "owner", caller?.login === OWNER_LOGIN)
      }
      const projectId = makeId("proj")
      const command = yield* Command.build(() =>
        Domain.ControlProtocol.ProjectCreate.make({
          projectId,
          ownerId: principal.userId,
          name: body.name,
          repoUrl: body.repoUrl,
          ...(body.defaultBranch === undefined ? {} : { defaultBranch: body.defaultBranch })
        })
      )
      yield* Command.ask(ControlPlane.ProjectRef, projectId, command)
      return yield* getProject(principal.userId, projectId)
    })
  ),
  Route.make(Api.ProjectEndpoints.getProject, ({ principal, params }) =>
    requireMember(principal, params.projectId).pipe(Effect.zipRight(getProject(principal.userId, params.projectId)))
  ),
  Route.make(Api.ProjectEndpoints.updateProject, ({ principal, params, body }) =>
    Effect.gen(function* () {
      yield* requireOwner(principal, params.projectId)
      const command = yield* Command.build(() =>
        Domain.ControlProtocol.ProjectSetPermissions.make({
          projectId: params.projectId,
          by: principal.userId,
          ...(body.permissionPolicy === undefined ? {} : { policy: body.permissionPolicy }),
          ...(body.permissionTimeoutSeconds === undefined ? {} : { timeoutSeconds: body.permissionTimeoutSeconds })
        })
      )
      yield* Command.ask(ControlPlane.ProjectRef, params.projectId, command)
      return yield* getProject(principal.userId, params.projectId)
    })
  )
]

const getProject = (userId: string, projectId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<ProjectRow>`
      SELECT p.id, p.name, p.repo_url, p.default_branch, p.owner_id, m.role, p.permission_policy,
            p.permission_timeout_seconds, p.created_at
      FROM projects p JOIN project_members m ON m.project_id = p.id AND m.user_id = ${userId}
      WHERE p.id = ${projectId}`.pipe(Effect.orDie)
    const row = rows[0]
    if (row === undefined) return yield* new ApiError({ code: "not_found", message: `no project ${projectId}` })
    return toProject(row)
  })
