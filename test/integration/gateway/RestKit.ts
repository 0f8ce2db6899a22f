import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { type Duration, Effect } from "effect"
import { expect } from "vitest"
import { waitUntil } from "../../src/Env.js"
import { type HttpResult, http, type TestUser, tempDir } from "../../src/index.js"
import { makeRepo } from "../../src/Repo.js"

export interface Recorded {
  readonly method: string
  readonly path: string
  readonly status: number
  readonly text: string
}

/** Every response a test saw, by the test file that saw it (a worker runs several files, ADR 0053). */
const seen: Array<Recorded & { readonly file: string | undefined }> = []

/** The responses this test file saw, for the secrets check at its end. */
export const recorded = (): ReadonlyArray<Recorded> => {
  const file = expect.getState().testPath
  return seen.filter((r) => r.file === file)
}

/** `http` as `user`, recording the response. */
export const api = (
  user: TestUser,
  method: string,
  path: string,
  options: { readonly body?: unknown; readonly query?: Record<string, string | number> } = {}
) => {
  const query =
    options.query === undefined
      ? ""
      : `?${new URLSearchParams(Object.entries(options.query).map(([k, v]): [string, string] => [k, String(v)])).toString()}`
  const full = `/api/v1${path}${query}`
  return http(method, full, {
    token: user.token,
    ...(options.body === undefined ? {} : { body: options.body })
  }).pipe(
    Effect.tap((r: HttpResult) =>
      Effect.sync(() => {
        const file = expect.getState().testPath
        // files of a worker run one after another: an earlier file's responses are no longer needed
        if (seen[0] !== undefined && seen[0].file !== file) seen.length = 0
        seen.push({ method, path: full, status: r.status, text: JSON.stringify(r.body ?? null), file })
      })
    )
  )
}

/** The responses that may carry a credential: the one that creates it. */
const CREATES_A_SECRET = /^(POST \/api\/v1\/tokens|POST \/api\/v1\/auth\/login|POST \/api\/v1\/nats\/credentials)$/

/**
 * No response recorded so far carries a token, a session token, a password or token hash, or the
 * name of a hash column; only the creation of a token may show its value.
 */
export const expectNoSecrets = (users: ReadonlyArray<TestUser>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const hashes = yield* sql<{ value: string }>`
      SELECT token_hash AS value FROM api_tokens UNION ALL SELECT token_hash FROM user_sessions
      UNION ALL SELECT password_hash FROM users WHERE password_hash IS NOT NULL`
    const needles = [
      "token_hash",
      "tokenHash",
      "password_hash",
      "passwordHash",
      "sam_pat_",
      "sam_ses_",
      ...users.map((u) => u.token),
      ...hashes.map((h) => h.value)
    ]
    const responses = recorded()
    expect(responses.length).toBeGreaterThan(0)
    for (const response of responses) {
      if (CREATES_A_SECRET.test(`${response.method} ${response.path.split("?")[0]}`)) continue
      for (const needle of needles) {
        expect(response.text.includes(needle), `${response.method} ${response.path} shows ${needle}`).toBe(false)
      }
    }
  })

/** A project of `user` on a fresh local repository. */
export const createProject = (user: TestUser, name = "demo") =>
  Effect.gen(function* () {
    const repo = makeRepo(join(yield* Effect.promise(() => tempDir("sam-repo-")), "repo"))
    const created = yield* api(user, "POST", "/projects", { body: { name, repoUrl: repo } })
    expect(created.status).toBe(201)
    return created.body.id as string
  })

export interface TaskRow {
  readonly status: string
  readonly executionStep: string | null
  readonly errorStep: string | null
  readonly errorReason: string | null
  readonly sessionId: string | null
  readonly workspaceId: string | null
  readonly nodeId: string | null
  readonly branch: string | null
}

export const taskRow = (taskId: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql<TaskRow>`
      SELECT status, execution_step, error_step, error_reason, session_id, workspace_id, node_id, branch
      FROM tasks WHERE id = ${taskId}`
  ).pipe(Effect.map((rows) => rows[0]))

/** Wait until the task's row satisfies `done`; returns it. */
export const untilTask = (
  taskId: string,
  what: string,
  done: (row: TaskRow) => boolean,
  timeout: Duration.DurationInput = "60 seconds"
) =>
  waitUntil(
    `task ${taskId}: ${what}`,
    taskRow(taskId).pipe(Effect.map((row) => (row !== undefined && done(row) ? row : undefined))),
    { timeout, every: "100 millis" }
  )

/** Submit a task as `user`; returns its id. */
export const submitTask = (user: TestUser, projectId: string, prompt: string, mode: "task" | "conversation") =>
  Effect.gen(function* () {
    const created = yield* api(user, "POST", `/projects/${projectId}/tasks`, { body: { prompt, mode } })
    expect(created.status).toBe(201)
    return created.body.id as string
  })

/** Submit a conversation task and wait until its agent answered and it awaits a follow-up. */
export const conversation = (user: TestUser, projectId: string, prompt: string) =>
  Effect.gen(function* () {
    const created = yield* api(user, "POST", `/projects/${projectId}/tasks`, { body: { prompt, mode: "conversation" } })
    expect(created.status).toBe(201)
    const taskId = created.body.id as string
    const row = yield* untilTask(taskId, "awaits a follow-up", (r) => r.executionStep === "awaiting_followup")
    return {
      taskId,
      sessionId: row.sessionId as string,
      workspaceId: row.workspaceId as string,
      nodeId: row.nodeId as string
    }
  })

/** Poll a GET until `done` holds for its body. */
export const until = <A>(
  user: TestUser,
  path: string,
  what: string,
  // biome-ignore lint/suspicious/noExplicitAny: a response body is arbitrary JSON
  done: (body: any) => A | undefined
) =>
  waitUntil(what, api(user, "GET", path).pipe(Effect.map((r) => (r.status === 200 ? done(r.body) : undefined))), {
    timeout: "30 seconds",
    every: "200 millis"
  })
