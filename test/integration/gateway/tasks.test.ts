import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Effect } from "effect"
import { expect } from "vitest"
import { waitUntil } from "../../src/Env.js"
import { awaitingFollowUp, GatewayEnv, http, makeUser, tempDir } from "../../src/index.js"
import { makeRepo } from "../../src/Repo.js"

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
})
