import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import type { NatsConnection } from "@nats-io/nats-core"
import { connect, credsAuthenticator } from "@nats-io/transport-node"
import { Auth, Gateway } from "@sam/gateway"
import { Effect } from "effect"
import { expect } from "vitest"
import { nextPermissionError, waitUntil } from "../../src/Env.js"
import { GatewayEnv, http, makeUser, type TestUser, tempDir } from "../../src/index.js"
import { makeRepo } from "../../src/Repo.js"

interface Minted {
  readonly creds: string
  readonly subjectPrefix: string
  readonly inboxPrefix: string
  readonly expiresAt: string
  readonly natsUrl: string
}

const mint = (token: string, body: Record<string, unknown> = {}) =>
  http("POST", "/api/v1/nats/credentials", { token, body })

/** A NATS connection with minted credentials, closed with the test's scope. */
const connectWith = (minted: Minted) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      connect({
        servers: minted.natsUrl,
        authenticator: credsAuthenticator(new TextEncoder().encode(minted.creds)),
        inboxPrefix: minted.inboxPrefix,
        name: "programmatic-client"
      })
    ),
    (nc) => Effect.promise(() => nc.close())
  )

/** Mint credentials from an API token and connect with them. */
const clientOf = (token: string) =>
  Effect.gen(function* () {
    const minted = yield* mint(token)
    expect(minted.status).toBe(201)
    const nc = yield* connectWith(minted.body as Minted)
    return { nc, prefix: (minted.body as Minted).subjectPrefix }
  })

// biome-ignore lint/suspicious/noExplicitAny: a reply is arbitrary JSON; tests assert it field by field
type Reply = any

/** Request/reply as a client would do it; the payload is JSON unless given as raw text. */
const request = (nc: NatsConnection, subject: string, payload: unknown, timeout = 20_000) =>
  Effect.promise(() =>
    nc.request(subject, typeof payload === "string" ? payload : JSON.stringify(payload), { timeout })
  ).pipe(Effect.map((msg) => msg.json<Reply>()))

const projectOf = (user: TestUser) =>
  Effect.gen(function* () {
    const repo = makeRepo(join(yield* Effect.promise(() => tempDir("sam-repo-")), "repo"))
    const project = yield* http("POST", "/api/v1/projects", {
      token: user.token,
      body: { name: "demo", repoUrl: repo }
    })
    return project.body.id as string
  })

const taskCount = (projectId: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql<{ n: number }>`
    SELECT count(*)::int AS n FROM tasks WHERE project_id = ${projectId}`
  ).pipe(Effect.map((rows) => rows[0]!.n))

layer(GatewayEnv, { excludeTestServices: true, timeout: 180_000 })("programmatic clients over NATS", (it) => {
  it.scoped("credentials minted from an API token create, prompt and cancel over request/reply", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const alice = yield* makeUser("Alice")
      const projectId = yield* projectOf(alice)
      const minted = yield* mint(alice.token)
      expect(minted.status).toBe(201)
      expect(minted.body).toMatchObject({
        subjectPrefix: `sam.in.${alice.userId}.${alice.tokenId}`,
        inboxPrefix: `_INBOX.${alice.userId}.${alice.tokenId}`
      })
      expect(minted.body.creds).toContain("BEGIN NATS USER JWT")
      expect(minted.body.natsUrl).toMatch(/^nats:\/\//)
      // Short-lived by default (ADR 0016): 12 hours.
      const hours = (Date.parse(minted.body.expiresAt) - Date.now()) / 3_600_000
      expect(hours).toBeGreaterThan(11.9)
      expect(hours).toBeLessThanOrEqual(12)

      const nc = yield* connectWith(minted.body as Minted)
      const prefix = minted.body.subjectPrefix as string
      const created = yield* request(nc, `${prefix}.task.create`, {
        projectId,
        prompt: "say hello over NATS",
        mode: "conversation"
      })
      expect(created).toMatchObject({ ok: true, result: { projectId, createdBy: alice.userId, mode: "conversation" } })
      const taskId = created.result.id as string
      const sessionId = yield* waitUntil(
        "the task awaits a follow-up",
        sql<{ sessionId: string | null; executionStep: string | null }>`
          SELECT session_id, execution_step FROM tasks WHERE id = ${taskId}`.pipe(
          Effect.map((rows) =>
            rows[0]?.executionStep === "awaiting_followup" ? (rows[0].sessionId ?? undefined) : undefined
          )
        ),
        { timeout: "60 seconds" }
      )
      const prompted = yield* request(nc, `${prefix}.session.prompt`, { sessionId, prompt: "say second answer" })
      expect(prompted).toEqual({
        ok: true,
        result: { sessionId, promptEpoch: 2 },
        // the correlation id of what the request caused (issue 12)
        requestId: expect.stringMatching(/^req_/)
      })
      yield* waitUntil(
        "the follow-up's answer is in the transcript",
        sql<{ n: number }>`
          SELECT count(*)::int AS n FROM session_events
          WHERE session_id = ${sessionId} AND payload::text LIKE '%second answer%'`.pipe(
          Effect.map((rows) => ((rows[0]?.n ?? 0) > 0 ? true : undefined))
        ),
        { timeout: "30 seconds" }
      )
      // A member who did not start the session may not prompt its agent over NATS either (ADR 0047).
      const bob = yield* makeUser("Bob")
      const added = yield* http("POST", `/api/v1/projects/${projectId}/members`, {
        token: alice.token,
        body: { userId: bob.userId }
      })
      expect(added.status).toBe(201)
      const asBob = yield* clientOf(bob.token)
      const driven = yield* request(asBob.nc, `${asBob.prefix}.session.prompt`, { sessionId, prompt: "run env" })
      expect(driven).toMatchObject({ ok: false, error: { code: "forbidden" } })
      expect(driven.error.message).toContain("only they can prompt it")
      const cancelled = yield* request(nc, `${prefix}.session.cancel`, { sessionId })
      // The follow-up's turn may have ended already: then nothing is in flight and the answer says so.
      expect(cancelled).toMatchObject({ ok: true, result: { sessionId } })
      expect(["cancelling", "idle"]).toContain((cancelled as { result: { status: string } }).result.status)
      const taskCancelled = yield* request(nc, `${prefix}.task.cancel`, { taskId, reason: "done here" })
      expect(taskCancelled).toMatchObject({ ok: true, result: { id: taskId, status: "cancelled" } })
      // A follow-up to the cancelled task's session is refused as over HTTP, once the session has stopped.
      yield* waitUntil(
        "the session to stop with its task",
        sql<{ status: string }>`SELECT status FROM sessions WHERE id = ${sessionId}`.pipe(
          Effect.map((rows) => (rows[0]?.status === "stopped" ? true : undefined))
        )
      )
      const late = yield* request(nc, `${prefix}.session.prompt`, { sessionId, prompt: "say too late" })
      expect(late).toMatchObject({ ok: false, error: { code: "invalid_state" } })
      const lateHttp = yield* http("POST", `/api/v1/sessions/${sessionId}/prompt`, {
        token: alice.token,
        body: { prompt: "say too late" }
      })
      expect(lateHttp.body.code).toBe(late.error.code)
    })
  )

  it.scoped("refusals carry the HTTP API's codes, and bad requests get an error reply", () =>
    Effect.gen(function* () {
      const alice = yield* makeUser("Alice")
      const bob = yield* makeUser("Bob")
      const projectId = yield* projectOf(alice)
      const { nc, prefix } = yield* clientOf(bob.token)

      const intruder = yield* request(nc, `${prefix}.task.create`, { projectId, prompt: "say intruder" })
      expect(intruder).toMatchObject({ ok: false, error: { code: "forbidden" } })
      const overHttp = yield* http("POST", `/api/v1/projects/${projectId}/tasks`, {
        token: bob.token,
        body: { prompt: "say intruder" }
      })
      expect(overHttp.body.code).toBe(intruder.error.code)

      const notJson = yield* request(nc, `${prefix}.task.create`, "{not json")
      expect(notJson).toMatchObject({ ok: false, error: { code: "invalid_json" } })
      const badBody = yield* request(nc, `${prefix}.task.create`, { projectId: "nope", prompt: "" })
      expect(badBody).toMatchObject({ ok: false, error: { code: "invalid_body" } })
      expect(badBody.error.details.map((d: { path: string }) => d.path).sort()).toEqual(["projectId", "prompt"])
      const unknown = yield* request(nc, `${prefix}.task.explode`, {})
      expect(unknown).toMatchObject({ ok: false, error: { code: "not_found" } })
      expect(unknown.error.details.commands).toContain("task.create")
      const noSession = yield* request(nc, `${prefix}.session.prompt`, { sessionId: "sess_none", prompt: "hi" })
      expect(noSession).toMatchObject({ ok: false, error: { code: "not_found" } })
      expect(yield* taskCount(projectId)).toBe(0)

      // A browser session cannot mint (nothing to bind the credentials to); the expiry follows the token's.
      const session = yield* Effect.flatMap(Auth, (auth) => auth.createSession(alice.userId)).pipe(
        Effect.provide(Auth.Default)
      )
      const bySession = yield* mint(session.sessionToken)
      expect(bySession.status).toBe(403)
      expect(bySession.body.code).toBe("forbidden")
      const shortToken = yield* http("POST", "/api/v1/tokens", {
        token: alice.token,
        body: { name: "short", expiresInDays: 2 }
      })
      const capped = yield* mint(shortToken.body.token, { expiresInHours: 24 })
      expect(capped.status).toBe(201)
      expect(Date.parse(capped.body.expiresAt)).toBeLessThanOrEqual(Date.parse(shortToken.body.expiresAt))
      expect(Date.parse(capped.body.expiresAt)).toBeLessThanOrEqual(Date.now() + 24 * 3_600_000)
      const byDefault = yield* mint(alice.token, {})
      expect(Date.parse(byDefault.body.expiresAt)).toBeLessThanOrEqual(Date.now() + 12 * 3_600_000)
      for (const hours of [0, 25, 24 * 365]) {
        const refused = yield* mint(alice.token, { expiresInHours: hours })
        expect(refused.body.code).toBe("invalid_body")
      }
    })
  )

  it.scoped("the broker refuses a publish outside the credential's own user and token", () =>
    Effect.gen(function* () {
      const alice = yield* makeUser("Alice")
      const bob = yield* makeUser("Bob")
      const projectId = yield* projectOf(bob)
      const second = yield* http("POST", "/api/v1/tokens", { token: alice.token, body: { name: "second" } })
      const { nc, prefix } = yield* clientOf(alice.token)
      const forged = [
        `sam.in.${bob.userId}.${bob.tokenId}.task.create`,
        `sam.in.${alice.userId}.${second.body.id}.task.create`
      ]
      for (const subject of forged) {
        const status = nc.status()
        const outcome = yield* Effect.either(
          Effect.tryPromise(() =>
            nc.request(subject, JSON.stringify({ projectId, prompt: "say forged" }), { timeout: 2000 })
          )
        )
        expect(outcome._tag).toBe("Left")
        const error = yield* nextPermissionError(status)
        expect(error).toMatchObject({ operation: "publish", subject })
      }
      const status = nc.status()
      nc.subscribe("sam.evt.>")
      expect(yield* nextPermissionError(status)).toMatchObject({ operation: "subscription", subject: "sam.evt.>" })
      expect(nc.isClosed()).toBe(false)
      expect(yield* taskCount(projectId)).toBe(0)
      // The connection still works within its own prefix.
      const own = yield* request(nc, `${prefix}.session.cancel`, { sessionId: "sess_none" })
      expect(own).toMatchObject({ ok: false, error: { code: "not_found" } })
    })
  )

  it.scoped("revoking the API token disconnects its NATS credentials at once (ADR 0016), and over HTTP", () =>
    Effect.gen(function* () {
      const alice = yield* makeUser("Alice")
      const projectId = yield* projectOf(alice)
      const token = yield* http("POST", "/api/v1/tokens", { token: alice.token, body: { name: "bot" } })
      const { nc, prefix } = yield* clientOf(token.body.token)
      const before = yield* request(nc, `${prefix}.task.create`, { projectId, prompt: "say before revoking" })
      expect(before).toMatchObject({ ok: true, result: { projectId } })

      const revoked = yield* http("DELETE", `/api/v1/tokens/${token.body.id}`, { token: alice.token })
      expect(revoked.status).toBe(200)
      // The server closes the connection (its account is revoked); nothing more gets through.
      const closed = yield* Effect.promise(() => nc.closed()).pipe(Effect.timeout("15 seconds"))
      expect(String(closed)).toMatch(/Authorization|revoked/i)
      expect(nc.isClosed()).toBe(true)
      expect(yield* taskCount(projectId)).toBe(1)
      const overHttp = yield* http("GET", "/api/v1/me", { token: token.body.token })
      expect(overHttp.status).toBe(401)
      expect((yield* mint(token.body.token)).status).toBe(401)
    })
  )

  it.scoped("several gateways share the ingress: each request is handled once", () =>
    Effect.gen(function* () {
      const alice = yield* makeUser("Alice")
      const projectId = yield* projectOf(alice)
      yield* Gateway.start({ host: "127.0.0.1", port: 0 })
      yield* Gateway.start({ host: "127.0.0.1", port: 0 })
      const { nc, prefix } = yield* clientOf(alice.token)
      const replies = yield* Effect.forEach(
        [1, 2, 3, 4, 5, 6],
        (n) => request(nc, `${prefix}.task.create`, { projectId, prompt: `say number ${n}` }),
        { concurrency: "unbounded" }
      )
      expect(replies.every((reply) => reply.ok)).toBe(true)
      const sql = yield* SqlClient.SqlClient
      const ids = replies.map((reply) => reply.result.id as string)
      yield* waitUntil(
        "every task to end",
        sql<{ n: number }>`
          SELECT count(*)::int AS n FROM tasks WHERE id IN ${sql.in(ids)} AND status IN ('completed', 'failed')`.pipe(
          Effect.map((rows) => (rows[0]?.n === ids.length ? true : undefined))
        ),
        { timeout: "90 seconds" }
      )
      expect(yield* taskCount(projectId)).toBe(6)
    })
  )
})
