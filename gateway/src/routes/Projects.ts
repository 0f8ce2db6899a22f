import { SqlClient } from "@effect/sql"
import { Api, Domain, makeId, type UserId } from "@sam/bus"
import { Effect } from "effect"
import type { z } from "zod"
import { requireMember, requireOwner } from "../Access.js"
import { ApiError } from "../ApiError.js"
import * as Command from "../Command.js"
import { GatewayConfig } from "../Config.js"
import * as Installations from "../GitHubInstallations.js"
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
  readonly githubRepository: string | null
  readonly createdAt: Date
}
const toProject = (row: ProjectRow) => ({ ...row, createdAt: row.createdAt.toISOString() })

export const routes = [
  Route.make(Api.ProjectEndpoints.listProjects, ({ principal }) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql<ProjectRow>`
          SELECT p.id, p.name, p.repo_url, p.default_branch, p.owner_id, m.role, p.permission_policy,
            p.permission_timeout_seconds, g.full_name AS github_repository, p.created_at
          FROM projects p JOIN project_members m ON m.project_id = p.id AND m.user_id = ${principal.userId}
          LEFT JOIN github_project_repositories g ON g.project_id = p.id
          ORDER BY p.created_at`.pipe(Effect.orDie)
      return { projects: rows.map(toProject) }
    })
  ),
  Route.make(Api.ProjectEndpoints.createProject, ({ principal, body }) =>
    Effect.gen(function* () {
      const github = body.github === undefined ? undefined : yield* pickRepository(principal.userId, body.github)
      const repoUrl = github?.repoUrl ?? body.repoUrl ?? ""
      const location = yield* RepoUrl.classify(repoUrl)
      let localBranch: string | undefined
      if (location._tag === "Local") {
        const sql = yield* SqlClient.SqlClient
        const [caller] = yield* sql<{ login: string | null }>`
          SELECT login FROM users WHERE id = ${principal.userId}`.pipe(Effect.orDie)
        const { localRepos } = yield* GatewayConfig
        // only a caller who may use local paths learns whether one holds a repository
        yield* RepoUrl.checkLocal(localRepos ?? "owner", caller?.login === OWNER_LOGIN)
        localBranch = (yield* RepoUrl.localRepository(repoUrl)).branch
      }
      // a local repository's own branch unless one is given (a remote one is not asked: that would be the
      // gateway reaching out to whatever URL a user gives)
      const defaultBranch = body.defaultBranch ?? github?.defaultBranch ?? localBranch
      const projectId = makeId("proj")
      const command = yield* Command.build(() =>
        Domain.ControlProtocol.ProjectCreate.make({
          projectId,
          ownerId: principal.userId,
          name: body.name,
          repoUrl,
          ...(defaultBranch === undefined ? {} : { defaultBranch })
        })
      )
      yield* Command.ask(Domain.ProjectRef, projectId, command)
      if (github !== undefined) {
        const sql = yield* SqlClient.SqlClient
        yield* sql`
          INSERT INTO github_project_repositories (project_id, installation_id, repository_id, full_name)
          VALUES (${projectId}, ${github.installationId}, ${github.repositoryId}, ${github.fullName})
          ON CONFLICT (project_id) DO NOTHING`.pipe(Effect.orDie)
      }
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
      yield* Command.ask(Domain.ProjectRef, params.projectId, command)
      return yield* getProject(principal.userId, params.projectId)
    })
  )
]

/**
 * A repository of one of the caller's installations, as GitHub lists it for them now (the installation and
 * the repository are checked as the user: the intersection of their access and the app's, ADR 0025).
 */
const pickRepository = (userId: string, pick: z.infer<typeof Api.ProjectGitHubRepository>) =>
  Effect.gen(function* () {
    const { githubApp } = yield* GatewayConfig
    if (githubApp === undefined) {
      return yield* new ApiError({ code: "not_found", message: "no GitHub App is configured (SAM_GITHUB_APP_ID)" })
    }
    const repositories = yield* Installations.repositories(githubApp.apiUrl, userId as UserId, pick.installationId)
    const repo = repositories.find((r) => r.fullName.toLowerCase() === pick.repository.toLowerCase())
    if (repo === undefined) {
      return yield* new ApiError({
        code: "not_found",
        message: `installation ${pick.installationId} gives you no repository ${pick.repository}`
      })
    }
    return {
      installationId: pick.installationId,
      repositoryId: repo.id,
      fullName: repo.fullName,
      defaultBranch: repo.defaultBranch,
      repoUrl: new URL(`/${repo.fullName}.git`, githubApp.webUrl).toString()
    }
  })

const getProject = (userId: string, projectId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<ProjectRow>`
      SELECT p.id, p.name, p.repo_url, p.default_branch, p.owner_id, m.role, p.permission_policy,
            p.permission_timeout_seconds, g.full_name AS github_repository, p.created_at
      FROM projects p JOIN project_members m ON m.project_id = p.id AND m.user_id = ${userId}
      LEFT JOIN github_project_repositories g ON g.project_id = p.id
      WHERE p.id = ${projectId}`.pipe(Effect.orDie)
    const row = rows[0]
    if (row === undefined) return yield* new ApiError({ code: "not_found", message: `no project ${projectId}` })
    return toProject(row)
  })
