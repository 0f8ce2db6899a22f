import { SqlClient } from "@effect/sql"
import { Consume, Domain, type EnvelopeOf, MessageId, Publish, registry, Subjects } from "@sam/bus"
import { StoredText } from "@sam/sql"
import { Effect, Redacted, Schedule } from "effect"
import { z } from "zod"
import { apiHeaders, call, type GitHubAppOptions } from "./GitHubApp.js"
import { mintInstallationToken } from "./GitHubAppToken.js"

/**
 * Task mode ends in a pull request (ADR 0028). A durable consumer of `task.status` events: when a task of
 * a project whose repository is reached through the GitHub App completes with a pushed branch, it opens a
 * pull request from that branch to the default branch as the installation, records its URL on the task and
 * on its session, and publishes `task.pull-request` (which becomes the `pr_created` notification and a feed
 * event). `pr_requested_at` is written before GitHub is asked: a redelivery after a crash finds the pull
 * request GitHub may already have opened (GitHub refuses a second one for the same head with 422) instead
 * of failing.
 */
export const CONSUMER = "github-pull-requests"

const taskEvents = registry(Domain.TaskStatusEvent, Domain.Notifications.PullRequestOpened)
type TaskEvent = EnvelopeOf<(typeof taskEvents.defs)[number]>

const PullRequest = z.object({ number: z.number().int().positive(), html_url: z.string().url() })

interface Candidate {
  readonly projectId: string
  readonly prompt: string
  readonly commitSha: string | null
  readonly defaultBranch: string
  readonly installationId: number
  readonly repositoryId: number
  readonly fullName: string
  readonly prUrl: string | null
  readonly requested: boolean
}

const firstLine = (text: string, max: number) => {
  const line =
    text
      .split("\n")
      .find((l) => l.trim() !== "")
      ?.trim() ?? text.trim()
  return line.length <= max ? line : `${line.slice(0, max - 1)}…`
}

/** The pull request GitHub already holds for `head` (any state), if any. */
const existing = (app: GitHubAppOptions, token: string, fullName: string, owner: string, branch: string) =>
  call(
    new URL(
      `/repos/${fullName}/pulls?state=all&head=${encodeURIComponent(`${owner}:${branch}`)}`,
      app.apiUrl
    ).toString(),
    { headers: apiHeaders(token) }
  ).pipe(
    Effect.map((answer) => {
      const parsed = z.array(PullRequest).safeParse(answer.body)
      return answer.status === 200 && parsed.success ? parsed.data[0] : undefined
    })
  )

export const openFor = Effect.fn("GitHubPullRequests.openFor")(function* (
  app: GitHubAppOptions,
  publicUrl: () => string,
  event: { readonly taskId: string; readonly sessionId: string | null; readonly branch: string }
) {
  const sql = yield* SqlClient.SqlClient
  const [task] = yield* sql<Candidate>`
    SELECT t.project_id, t.prompt, t.commit_sha, p.default_branch, g.installation_id::float8 AS installation_id,
      g.repository_id::float8 AS repository_id, g.full_name, t.pr_url, t.pr_requested_at IS NOT NULL AS requested
    FROM tasks t JOIN projects p ON p.id = t.project_id
    JOIN github_project_repositories g ON g.project_id = t.project_id
    WHERE t.id = ${event.taskId} AND t.mode = 'task'`
  if (task === undefined || task.prUrl !== null) return Consume.Outcome.Ack()
  if (event.branch === task.defaultBranch) {
    yield* Effect.logWarning(`task ${event.taskId}: no pull request from the default branch to itself`)
    return Consume.Outcome.Ack()
  }
  yield* sql`UPDATE tasks SET pr_requested_at = coalesce(pr_requested_at, now()) WHERE id = ${event.taskId}`
  const minted = yield* mintInstallationToken(app, task.installationId, task.repositoryId)
  const token = Redacted.value(minted.token)
  const owner = task.fullName.split("/")[0] ?? ""
  const prompt = StoredText.visible(StoredText.decode(task.prompt))
  const link = `${publicUrl()}/projects/${task.projectId}/chat/${event.sessionId ?? ""}`
  const body = [
    "Opened by SAM for a task in task mode.",
    "",
    "**Task**",
    "",
    prompt.length <= 4000 ? prompt : `${prompt.slice(0, 3999)}…`,
    "",
    ...(task.commitSha === null ? [] : [`Commit: ${task.commitSha}`, ""]),
    `Session: ${link}`
  ].join("\n")
  const created = yield* call(new URL(`/repos/${task.fullName}/pulls`, app.apiUrl).toString(), {
    method: "POST",
    headers: { ...apiHeaders(token), "content-type": "application/json" },
    body: JSON.stringify({
      title: `SAM: ${firstLine(prompt, 72)}`,
      head: event.branch,
      base: task.defaultBranch,
      body,
      maintainer_can_modify: true
    })
  })
  const parsed = PullRequest.safeParse(created.body)
  const pr =
    created.status === 201 && parsed.success
      ? parsed.data
      : created.status === 422
        ? yield* existing(app, token, task.fullName, owner, event.branch)
        : undefined
  if (pr === undefined) {
    // 422 with no pull request for the head: the branch is not on GitHub (it was not pushed); nothing to retry.
    if (created.status === 422) {
      yield* Effect.logWarning(
        `task ${event.taskId}: GitHub refused the pull request (${JSON.stringify(created.body)})`
      )
      return Consume.Outcome.Ack()
    }
    yield* Effect.logWarning(`task ${event.taskId}: GitHub answered ${created.status} to the pull request; retrying`)
    return Consume.Outcome.Nak({ delay: "5 seconds" })
  }
  yield* sql.withTransaction(
    Effect.gen(function* () {
      yield* sql`UPDATE tasks SET pr_url = ${pr.html_url}, pr_number = ${pr.number} WHERE id = ${event.taskId}`
      if (event.sessionId !== null)
        yield* sql`UPDATE sessions SET pr_url = ${pr.html_url} WHERE id = ${event.sessionId}`
    })
  )
  // Its id is derived from the task: publishing it again after a crash stores nothing new.
  yield* Publish.publish(
    Subjects.event(task.projectId, "task", event.taskId, Domain.Notifications.PullRequestOpened.type),
    Domain.Notifications.PullRequestOpened.make(
      { taskId: event.taskId, url: pr.html_url, number: pr.number, branch: event.branch },
      { id: MessageId.parse(`msg_pr${event.taskId.replace(/^task_/, "")}`) }
    )
  )
  yield* Effect.logInfo(`task ${event.taskId}: pull request ${pr.html_url}`)
  return Consume.Outcome.Ack()
})

const handle = (app: GitHubAppOptions, publicUrl: () => string) => (delivery: Consume.Delivery<TaskEvent>) =>
  Effect.gen(function* () {
    const event = delivery.envelope
    if (event.type !== "task.status") return Consume.Outcome.Ack()
    const body = event.body
    if (body.status !== "completed" || body.branch === null) return Consume.Outcome.Ack()
    return yield* openFor(app, publicUrl, { taskId: body.taskId, sessionId: body.sessionId, branch: body.branch })
  })

/** Run the reactor until interrupted; a consumer that stops is reopened. Only with a GitHub App configured. */
export const run = Effect.fn("GitHubPullRequests.run")(function* (app: GitHubAppOptions, publicUrl: () => string) {
  yield* Consume.ensureConsumer("SAM_EVT", {
    durable: CONSUMER,
    filterSubject: "sam.evt.*.task.*.task.status",
    startAt: "new"
  })
  yield* Consume.run(
    Consume.consume<typeof taskEvents.defs, TaskEvent>("SAM_EVT", CONSUMER, taskEvents, {
      onMalformed: () => Effect.void
    }),
    handle(app, publicUrl),
    { retryDelay: "5 seconds" }
  ).pipe(
    Effect.tapErrorCause((cause) => Effect.logWarning("pull requests: consumer stopped; reopening", cause)),
    Effect.retry(Schedule.exponential("200 millis").pipe(Schedule.union(Schedule.spaced("10 seconds"))))
  )
})
