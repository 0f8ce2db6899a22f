import { execFileSync } from "node:child_process"
import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Effect } from "effect"
import { expect } from "vitest"
import { waitUntil } from "../../src/Env.js"
import { awaitingFollowUp, GatewayEnv, http, makeUser, tempDir } from "../../src/index.js"
import { makeRepo } from "../../src/Repo.js"
import { untilTask } from "./RestKit.js"

/** A new user's project on a new repository, with a conversation whose first turn ("say ready") is done. */
const conversation = (name: string) =>
  Effect.gen(function* () {
    const alice = yield* makeUser("Alice")
    const repo = makeRepo(join(yield* Effect.promise(() => tempDir("sam-repo-")), "repo"))
    const project = yield* http("POST", "/api/v1/projects", { token: alice.token, body: { name, repoUrl: repo } })
    const chat = yield* http("POST", `/api/v1/projects/${project.body.id}/tasks`, {
      token: alice.token,
      body: { prompt: "say ready", mode: "conversation" }
    })
    return { alice, projectId: project.body.id as string, sessionId: yield* awaitingFollowUp(chat.body.id) }
  })

layer(GatewayEnv, { excludeTestServices: true, timeout: 120_000 })("gateway: tasks and sessions over HTTP", (it) => {
  it.effect("a chat message becomes a task that runs, and a follow-up prompt reaches its session", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const alice = yield* makeUser("Alice")
      const repo = makeRepo(join(yield* Effect.promise(() => tempDir("sam-repo-")), "repo"))
      const project = yield* http("POST", "/api/v1/projects", {
        token: alice.token,
        body: { name: "demo", repoUrl: repo }
      })
      const created = yield* http("POST", `/api/v1/projects/${project.body.id}/tasks`, {
        token: alice.token,
        body: { prompt: "say hello from the gateway", mode: "conversation" }
      })
      expect(created.status).toBe(201)
      expect(created.body).toMatchObject({ projectId: project.body.id, createdBy: alice.userId, mode: "conversation" })
      const taskId = created.body.id as string
      const sessionId = yield* awaitingFollowUp(taskId)
      const prompted = yield* http("POST", `/api/v1/sessions/${sessionId}/prompt`, {
        token: alice.token,
        body: { prompt: "say second answer" }
      })
      expect(prompted.status).toBe(202)
      expect(prompted.body.promptEpoch).toBe(2)
      yield* waitUntil(
        "the follow-up's answer is in the transcript",
        sql<{ n: number }>`
          SELECT count(*)::int AS n FROM session_events
          WHERE session_id = ${sessionId} AND payload::text LIKE '%second answer%'`.pipe(
          Effect.map((rows) => ((rows[0]?.n ?? 0) > 0 ? true : undefined))
        ),
        { timeout: "30 seconds" }
      )

      const bob = yield* makeUser("Bob")
      const refused = yield* http("POST", `/api/v1/sessions/${sessionId}/prompt`, {
        token: bob.token,
        body: { prompt: "say intruder" }
      })
      expect(refused.status).toBe(403)
      const notMine = yield* http("POST", `/api/v1/projects/${project.body.id}/tasks`, {
        token: bob.token,
        body: { prompt: "say intruder" }
      })
      expect(notMine.status).toBe(403)
      const tasks = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM tasks`
      expect(tasks[0]?.n).toBe(1)
    })
  )

  it.effect(
    "a follow-up sent while the agent works is queued in the transcript until its turn; a task refuses one",
    () =>
      Effect.gen(function* () {
        const { alice, projectId, sessionId } = yield* conversation("q")
        const prompt = (sessionId: string, text: string) =>
          http("POST", `/api/v1/sessions/${sessionId}/prompt`, { token: alice.token, body: { prompt: text } })
        const transcript = (sessionId: string) =>
          http("GET", `/api/v1/sessions/${sessionId}/events?limit=1000`, { token: alice.token }).pipe(
            Effect.map(
              (r) =>
                r.body.events as Array<{ seq: number; promptEpoch: number; event: { type: string; text?: string } }>
            )
          )
        // sent while the agent waits: it begins at once, and nothing says it waited
        expect((yield* prompt(sessionId, "sleep 3000\nsay first turn done")).body.promptEpoch).toBe(2)
        const queued = yield* prompt(sessionId, "say the queued one ran")
        expect(queued.status).toBe(202)
        expect(queued.body.promptEpoch).toBe(3)
        /** what the agent said in a prompt's turn (its text comes in chunks) */
        const said = (
          events: ReadonlyArray<{ promptEpoch: number; event: { type: string; text?: string } }>,
          epoch: number
        ) =>
          events
            .filter((e) => e.promptEpoch === epoch && e.event.type === "text")
            .map((e) => e.event.text)
            .join("")
        const events = yield* waitUntil(
          "the queued prompt's answer",
          transcript(sessionId).pipe(
            Effect.map((events) => (said(events, 3).includes("the queued one ran") ? events : undefined))
          ),
          { timeout: "30 seconds" }
        )
        expect(said(events, 2)).toContain("first turn done")
        const kinds = (type: string) => events.filter((e) => e.event.type === type)
        expect(kinds("prompt-queued").map((e) => [e.promptEpoch, e.event.text])).toEqual([
          [3, "say the queued one ran"]
        ])
        // recorded when it was sent, during the first turn; its turn began once that turn had ended
        const queuedAt = kinds("prompt-queued")[0]!.seq
        const firstTurnEnd = events.find((e) => e.promptEpoch === 2 && e.event.type === "turn-ended")!.seq
        const started = kinds("prompt-started").find((e) => e.promptEpoch === 3)!.seq
        expect(queuedAt).toBeLessThan(firstTurnEnd)
        expect(firstTurnEnd).toBeLessThan(started)

        // A task ends with its agent's turn: a follow-up sent during it would never be answered, and is refused.
        const task = yield* http("POST", `/api/v1/projects/${projectId}/tasks`, {
          token: alice.token,
          body: { prompt: "sleep 3000\nsay task done", mode: "task" }
        })
        const sql = yield* SqlClient.SqlClient
        const taskSession = yield* waitUntil(
          "the task's session",
          sql<{ sessionId: string | null }>`SELECT session_id FROM tasks WHERE id = ${task.body.id}`.pipe(
            Effect.map((rows) => rows[0]?.sessionId ?? undefined)
          ),
          { timeout: "30 seconds" }
        )
        // the session actor has opened it (the task names it in the transaction that asks for it)
        yield* waitUntil(
          "the task's session working",
          http("GET", `/api/v1/sessions/${taskSession}`, { token: alice.token }).pipe(
            Effect.map((r) => (r.status === 200 && r.body.snapshot?.activity === "prompting") || undefined)
          ),
          { timeout: "30 seconds" }
        )
        const refused = yield* prompt(taskSession, "say more")
        expect(refused.status).toBe(409)
        expect(refused.body.message).toContain("Interrupt the turn to add to it, or start a new task")
        yield* untilTask(task.body.id, "completed", (row) => row.status === "completed")
        const taskEvents = yield* transcript(taskSession)
        expect(taskEvents.filter((e) => e.event.type === "prompt-queued")).toEqual([])
        expect(taskEvents.filter((e) => e.event.type === "prompt-started")).toHaveLength(1)
      })
  )

  it.effect(
    "a prompt and an answer larger than a report may carry reach the transcript cut, with nothing around them lost",
    () =>
      Effect.gen(function* () {
        const { alice, sessionId } = yield* conversation("b")
        // 150,000 quotes: 300 kB of JSON each time they are sent (the demo agent echoes the line back)
        const quotes = '"'.repeat(150_000)
        const prompted = yield* http("POST", `/api/v1/sessions/${sessionId}/prompt`, {
          token: alice.token,
          body: { prompt: `say big one coming\n${quotes}\nsay after the big one` }
        })
        expect(prompted.status).toBe(202)
        const events = yield* waitUntil(
          "the turn's end",
          http("GET", `/api/v1/sessions/${sessionId}/events?limit=1000`, { token: alice.token }).pipe(
            Effect.map((r) => r.body.events as Array<{ promptEpoch: number; event: { type: string; text?: string } }>),
            Effect.map((events) =>
              events.some((e) => e.promptEpoch === 2 && e.event.type === "turn-ended") ? events : undefined
            )
          ),
          { timeout: "30 seconds" }
        )
        const turn = events.filter((e) => e.promptEpoch === 2)
        const cutMark = /… \[\d+ characters cut: an event may carry at most 256 kB\]/
        const started = turn.find((e) => e.event.type === "prompt-started")
        expect(started?.event.text?.startsWith('say big one coming\n"""')).toBe(true)
        expect(started?.event.text).toMatch(cutMark)
        const said = turn.filter((e) => e.event.type === "text").map((e) => e.event.text ?? "")
        expect(said.join("")).toContain("big one coming")
        // the echo of the quotes, cut
        expect(said.some((text) => text.includes('"""') && cutMark.test(text))).toBe(true)
        expect(said.join("")).toContain("after the big one")
      })
  )

  it.effect("a project on a local repository takes the repository's branch, and its task runs on it", () =>
    Effect.gen(function* () {
      const alice = yield* makeUser("Alice")
      // git's own default branch is `master` on many machines; SAM's default, `main`, would not be found
      const repo = makeRepo(join(yield* Effect.promise(() => tempDir("sam-repo-")), "repo"), "trunk")
      const project = yield* http("POST", "/api/v1/projects", {
        token: alice.token,
        body: { name: "t", repoUrl: repo }
      })
      expect(project.status).toBe(201)
      expect(project.body.defaultBranch).toBe("trunk")
      const asUrl = yield* http("POST", "/api/v1/projects", {
        token: alice.token,
        body: { name: "u", repoUrl: `file://${repo}` }
      })
      expect(asUrl.body.defaultBranch).toBe("trunk")
      // a branch given wins
      const given = yield* http("POST", "/api/v1/projects", {
        token: alice.token,
        body: { name: "g", repoUrl: repo, defaultBranch: "release" }
      })
      expect(given.body.defaultBranch).toBe("release")
      // a path with no repository (a mistyped one, an empty directory) is refused at once, on its field
      const projectsBefore = (yield* http("GET", "/api/v1/projects", { token: alice.token })).body.projects.length
      for (const path of [`${repo}-typo`, yield* Effect.promise(() => tempDir("sam-empty-"))]) {
        const none = yield* http("POST", "/api/v1/projects", { token: alice.token, body: { name: "n", repoUrl: path } })
        expect(none.status, JSON.stringify(none.body)).toBe(400)
        expect(none.body).toMatchObject({ code: "invalid_body", details: [{ path: "repoUrl" }] })
        expect(none.body.message).toContain("no git repository at this path")
      }
      // a named pipe where HEAD should be is not waited on, and is no repository
      const piped = yield* Effect.promise(() => tempDir("sam-fifo-"))
      execFileSync("mkdir", [join(piped, ".git")])
      execFileSync("mkfifo", [join(piped, ".git", "HEAD")])
      const fifo = yield* http("POST", "/api/v1/projects", { token: alice.token, body: { name: "f", repoUrl: piped } })
      expect(fifo.status).toBe(400)
      expect((yield* http("GET", "/api/v1/projects", { token: alice.token })).body.projects).toHaveLength(
        projectsBefore
      )
      // HEAD linked to another file shows nothing of it
      const linked = yield* Effect.promise(() => tempDir("sam-link-"))
      execFileSync("mkdir", [join(linked, ".git")])
      execFileSync("ln", ["-s", "/etc/hostname", join(linked, ".git", "HEAD")])
      const link = yield* http("POST", "/api/v1/projects", { token: alice.token, body: { name: "l", repoUrl: linked } })
      expect(link.body.defaultBranch).toBe("main")
      // a worktree's checkout (its .git a file naming the repository) is one
      const worktree = join(yield* Effect.promise(() => tempDir("sam-worktree-")), "wt")
      execFileSync("git", ["-C", repo, "worktree", "add", "-q", "--detach", worktree])
      const tree = yield* http("POST", "/api/v1/projects", {
        token: alice.token,
        body: { name: "w", repoUrl: worktree }
      })
      expect(tree.status, JSON.stringify(tree.body)).toBe(201)

      const created = yield* http("POST", `/api/v1/projects/${project.body.id}/tasks`, {
        token: alice.token,
        body: { prompt: "say on trunk" }
      })
      expect(created.status).toBe(201)
      const task = yield* untilTask(created.body.id, "ends", (r) => ["completed", "failed"].includes(r.status))
      expect(task).toMatchObject({ status: "completed", errorReason: null })
    })
  )
})
