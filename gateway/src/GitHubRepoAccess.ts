import { SqlClient } from "@effect/sql"
import { answerEach, Domain, Nats, Publish, Subjects, type UserId } from "@sam/bus"
import { Effect, Redacted } from "effect"
import { ApiError } from "./ApiError.js"
import type { GitHubAppOptions } from "./GitHubApp.js"
import { mintInstallationToken } from "./GitHubAppToken.js"
import { repositoryAccess } from "./GitHubInstallations.js"

const { GitAccess } = Domain

/** What a workspace's token may do: read and push code, nothing else (no pull requests, issues, settings). */
export const WORKSPACE_PERMISSIONS = { contents: "write", metadata: "read" } as const
/** The same for a task whose submitter may only read the repository on GitHub (ADR 0048). */
export const READ_ONLY_PERMISSIONS = { contents: "read", metadata: "read" } as const

/** Workspaces in these states get no token: their repository work is over. */
const ENDED = ["stopping", "stopped", "deleted", "error"]

interface WorkspaceRepo {
  readonly nodeId: string | null
  readonly status: string
  readonly defaultBranch: string
  readonly installationId: number | null
  readonly repositoryId: number | null
  readonly uninstalled: boolean
  readonly submitter: string | null
  readonly submitterIsMember: boolean
  readonly taskStatus: string | null
}

/**
 * What a node may get for one workspace (ADR 0028): a token limited to the workspace's project repository,
 * only when the ledger places that workspace on the asking node. Never logs the token.
 */
export const gitAccess = Effect.fn("GitHubRepoAccess.gitAccess")(function* (
  app: GitHubAppOptions | undefined,
  nodeId: string,
  workspaceId: string
) {
  const sql = yield* SqlClient.SqlClient
  const refuse = (code: "none" | "forbidden" | "unavailable", error: string): Domain.GitAccess.GitAccessReply => ({
    ok: false,
    code,
    error
  })
  const [row] = yield* sql<WorkspaceRepo>`
    SELECT w.node_id, w.status, p.default_branch, g.installation_id::float8 AS installation_id,
      g.repository_id::float8 AS repository_id, a.uninstalled_at IS NOT NULL AS uninstalled, t.created_by AS submitter, t.status AS task_status,
      EXISTS (SELECT 1 FROM project_members m WHERE m.project_id = w.project_id AND m.user_id = t.created_by)
        AS submitter_is_member
    FROM workspaces w JOIN projects p ON p.id = w.project_id LEFT JOIN tasks t ON t.id = w.task_id
    LEFT JOIN github_project_repositories g ON g.project_id = p.id
    LEFT JOIN github_installation_accounts a ON a.installation_id = g.installation_id
    WHERE w.id = ${workspaceId}`.pipe(Effect.orDie)
  if (row === undefined || row.nodeId !== nodeId) {
    // Dropped and audited, as a report naming another node's workspace is (design §4).
    yield* Effect.logWarning(`node ${nodeId} asked for repository access to workspace ${workspaceId}, not its own`)
    yield* Publish.publish(
      Subjects.event("system", "node", nodeId, Domain.ReportDropped.type),
      Domain.ReportDropped.make({
        nodeId,
        kind: "workspace",
        entityId: workspaceId,
        reportType: "git.access",
        reason: "workspace is not on this node"
      })
    ).pipe(Effect.catchAll((e) => Effect.logWarning(`the audit event was not published: ${e.message}`)))
    return refuse("forbidden", `workspace ${workspaceId} is not on this node`)
  }
  if (ENDED.includes(row.status)) return refuse("forbidden", `workspace ${workspaceId} is ${row.status}`)
  if (row.installationId === null || row.repositoryId === null) {
    return refuse("none", "the project's repository is not reached through a GitHub App installation")
  }
  if (app === undefined) return refuse("unavailable", "no GitHub App is configured (SAM_GITHUB_APP_ID)")
  if (row.uninstalled)
    return refuse("forbidden", `the GitHub App was uninstalled from installation ${row.installationId}`)
  if (row.submitter === null) return refuse("forbidden", `workspace ${workspaceId} has no task, so nobody's access`)
  if (!row.submitterIsMember) {
    return refuse("forbidden", "the task's submitter is no longer a member of its project")
  }
  // Its work is over (committed and pushed before it completed; cancelled, failed): nothing of it has a use for the
  // repository now, so whatever still asks (a process that outlived its agent) gets nothing.
  if (row.taskStatus !== null && Domain.TERMINAL_TASK_STATUSES.has(row.taskStatus as Domain.TaskStatus)) {
    return refuse("forbidden", `the workspace's task is ${row.taskStatus}: it needs the repository no more`)
  }
  // The submitter's own access, as GitHub says now: a member who may only read the repository gets a token that
  // only reads it (ADR 0048), and one GitHub gives nothing gets nothing.
  const submitter = yield* repositoryAccess(
    app.apiUrl,
    row.submitter as UserId,
    row.installationId,
    row.repositoryId
  ).pipe(
    Effect.map((access) => ({ ok: true as const, access })),
    Effect.catchTag("ApiError", (e) => Effect.succeed({ ok: false as const, error: e.message }))
  )
  if (!submitter.ok) return refuse("unavailable", submitter.error)
  if (submitter.access.access === "none") {
    const why =
      submitter.access.why === "no-token"
        ? "SAM holds no GitHub token of theirs"
        : "GitHub does not give them this repository through the app"
    return refuse("forbidden", `the task's submitter cannot reach this repository: ${why}`)
  }
  const permissions = submitter.access.access === "write" ? WORKSPACE_PERMISSIONS : READ_ONLY_PERMISSIONS
  // Contents only: the pull request is opened by the control plane, with a token of its own.
  return yield* mintInstallationToken(app, row.installationId, row.repositoryId, permissions).pipe(
    Effect.map(
      (minted): Domain.GitAccess.GitAccessReply => ({
        ok: true,
        username: "x-access-token",
        token: Redacted.value(minted.token),
        expiresAt: minted.expiresAt.toISOString(),
        defaultBranch: row.defaultBranch
      })
    ),
    Effect.catchTag("ApiError", (e) =>
      Effect.succeed(refuse(e.code === "unavailable" ? "unavailable" : "forbidden", e.message))
    )
  )
})

/**
 * Whether `userId` may submit a task of `mode` to a project tied to a GitHub repository (ADR 0048): GitHub must
 * give them the repository through the app, and a task (which ends in a pushed branch and a pull request) needs
 * push access; a chat needs only read access. A project without a repository asks nothing of GitHub.
 */
export const requireSubmitterAccess = Effect.fn("GitHubRepoAccess.requireSubmitterAccess")(function* (
  app: GitHubAppOptions | undefined,
  userId: UserId,
  projectId: string,
  mode: "task" | "conversation"
) {
  const sql = yield* SqlClient.SqlClient
  const [tied] = yield* sql<{ installationId: number; repositoryId: number; fullName: string }>`
    SELECT installation_id::float8 AS installation_id, repository_id::float8 AS repository_id, full_name
    FROM github_project_repositories WHERE project_id = ${projectId}`.pipe(Effect.orDie)
  if (tied === undefined) return
  if (app === undefined) {
    return yield* new ApiError({ code: "unavailable", message: "no GitHub App is configured (SAM_GITHUB_APP_ID)" })
  }
  const access = yield* repositoryAccess(app.apiUrl, userId, tied.installationId, tied.repositoryId)
  if (access.access === "none") {
    return yield* new ApiError({
      code: "forbidden",
      message:
        access.why === "no-token"
          ? `you cannot reach ${tied.fullName} on GitHub: SAM holds no GitHub token of yours (sign in with GitHub)`
          : `you cannot reach ${tied.fullName} on GitHub: GitHub does not give you this repository through the app`
    })
  }
  if (access.access === "read" && mode === "task") {
    return yield* new ApiError({
      code: "forbidden",
      message: `you can read ${tied.fullName} on GitHub but not push to it, and a task ends in a branch pushed there and a pull request: start a chat (mode conversation) instead, or ask for push access`
    })
  }
})

/**
 * Answers `sam.agent.<nodeId>.git`: the node id comes from the subject, which only that node's account can
 * publish on (ADR 0016); the reply goes to the `_R_.` subject the server made for the requester and nowhere
 * else. Runs whether or not a GitHub App is configured, so a node asking without one hears why at once.
 */
export const serve = Effect.fn("GitHubRepoAccess.serve")(function* (app: GitHubAppOptions | undefined) {
  const { nc } = yield* Nats
  const sub = nc.subscribe("sam.agent.*.git", { queue: "sam-git-access" })
  yield* Effect.addFinalizer(() => Effect.sync(() => sub.unsubscribe()))
  const answer = (subject: string, reply: string | undefined, data: Uint8Array) =>
    Effect.gen(function* () {
      if (reply === undefined || !reply.startsWith("_R_.")) {
        yield* Effect.logWarning(`repository access request on ${subject} without a server-made reply subject: dropped`)
        return
      }
      const respond = (body: Domain.GitAccess.GitAccessReply) =>
        Effect.sync(() => nc.publish(reply, JSON.stringify(body)))
      const nodeId = subject.split(".")[2] ?? ""
      if (!Subjects.isToken(nodeId)) return yield* respond({ ok: false, code: "bad_request", error: "bad subject" })
      const request = GitAccess.GitAccessRequest.safeParse(
        yield* Effect.try(() => JSON.parse(new TextDecoder().decode(data))).pipe(Effect.orElseSucceed(() => undefined))
      )
      if (!request.success) return yield* respond({ ok: false, code: "bad_request", error: "expected {workspaceId}" })
      yield* respond(yield* gitAccess(app, nodeId, request.data.workspaceId))
    }).pipe(Effect.catchAllCause((cause) => Effect.logError("repository access request failed", cause)))
  yield* answerEach(sub, "GitHubRepoAccess.answer", answer)
})
