import { SqlClient } from "@effect/sql"
import { Domain, Nats, Publish, Subjects } from "@sam/bus"
import { Effect, Redacted, Runtime } from "effect"
import type { GitHubAppOptions } from "./GitHubApp.js"
import { mintInstallationToken } from "./GitHubAppToken.js"

const { GitAccess } = Domain

/** What a workspace's token may do: read and push code, nothing else (no pull requests, issues, settings). */
export const WORKSPACE_PERMISSIONS = { contents: "write", metadata: "read" } as const

/** Workspaces in these states get no token: their repository work is over. */
const ENDED = ["stopping", "stopped", "deleted", "error"]

interface WorkspaceRepo {
  readonly nodeId: string | null
  readonly status: string
  readonly defaultBranch: string
  readonly installationId: number | null
  readonly repositoryId: number | null
  readonly uninstalled: boolean
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
      g.repository_id::float8 AS repository_id, a.uninstalled_at IS NOT NULL AS uninstalled
    FROM workspaces w JOIN projects p ON p.id = w.project_id
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
  // Contents only: the pull request is opened by the control plane, with a token of its own.
  return yield* mintInstallationToken(app, row.installationId, row.repositoryId, WORKSPACE_PERMISSIONS).pipe(
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
  const runFork = Runtime.runFork(yield* Effect.runtime<SqlClient.SqlClient | Nats>())
  yield* Effect.forkScoped(
    Effect.promise(async () => {
      for await (const msg of sub) runFork(answer(msg.subject, msg.reply, msg.data))
    })
  )
})
