import { layer } from "@effect/vitest"
import { connect, credsAuthenticator } from "@nats-io/transport-node"
import { makeId } from "@sam/bus"
import { Effect } from "effect"
import { expect } from "vitest"
import { waitUntil } from "../../src/Env.js"
import { GatewayEnv, GatewayUrl, makeUser, type TestUser } from "../../src/index.js"
import { isOpen, rawClient } from "./FeedTestKit.js"
import { api, createProject, untilTask } from "./RestKit.js"

// biome-ignore lint/suspicious/noExplicitAny: transcript events are arbitrary JSON; tests assert them field by field
type Event = any

/** The session's whole transcript, as a member reads it. */
const transcript = (user: TestUser, sessionId: string) =>
  api(user, "GET", `/sessions/${sessionId}/events`, { query: { afterSeq: 0, limit: 1000 } }).pipe(
    Effect.map((r) => (r.status === 200 ? (r.body.events as Array<{ seq: number; event: Event }>) : []))
  )

/** Wait until an entry of the transcript satisfies `match`; returns it. */
const untilEvent = (user: TestUser, sessionId: string, what: string, match: (event: Event) => boolean) =>
  waitUntil(what, transcript(user, sessionId).pipe(Effect.map((events) => events.find((e) => match(e.event))?.event)), {
    timeout: "60 seconds",
    every: "200 millis"
  })

/** The agent's words so far (it says them in chunks, one `text` event each). */
const spoken = (events: ReadonlyArray<Event>) =>
  events
    .filter((e) => e.type === "text")
    .map((e) => String(e.text))
    .join("")

/** Wait until the agent has said `text`. */
const untilSaid = (user: TestUser, sessionId: string, text: string) =>
  waitUntil(
    `the agent to say "${text}"`,
    transcript(user, sessionId).pipe(
      Effect.map((events) => (spoken(events.map((e) => e.event)).includes(text) ? true : undefined))
    ),
    { timeout: "60 seconds", every: "200 millis" }
  )

/** The pending requests of the session's snapshot, once there is one. */
const untilPending = (user: TestUser, sessionId: string) =>
  waitUntil(
    "a permission request in the snapshot",
    api(user, "GET", `/sessions/${sessionId}`).pipe(
      Effect.map((r) => {
        const pending = r.body?.snapshot?.permissions as Array<Event> | undefined
        return pending !== undefined && pending.length > 0 ? pending : undefined
      })
    ),
    { timeout: "60 seconds", every: "100 millis" }
  )

/** A conversation whose agent asks permission for `title`, then says `after <title>`. */
const asking = (user: TestUser, projectId: string, title: string) =>
  Effect.gen(function* () {
    const created = yield* api(user, "POST", `/projects/${projectId}/tasks`, {
      body: { prompt: `say before\nask-permission ${title}\nsay after ${title}`, mode: "conversation" }
    })
    expect(created.status).toBe(201)
    const row = yield* untilTask(created.body.id, "has a session", (r) => r.sessionId !== null)
    return { taskId: created.body.id as string, sessionId: row.sessionId as string }
  })

const answer = (user: TestUser, sessionId: string, requestId: string, body: unknown) =>
  api(user, "POST", `/sessions/${sessionId}/permissions/${requestId}`, { body })

const setPolicy = (user: TestUser, projectId: string, body: Record<string, unknown>) =>
  api(user, "PATCH", `/projects/${projectId}`, { body })

layer(GatewayEnv, { excludeTestServices: true, timeout: 180_000 })("gateway: permission requests", (it) => {
  it.effect(
    "a member answers a request over HTTP: the snapshot shows it, the agent goes on with the option",
    () =>
      Effect.gen(function* () {
        const alice = yield* makeUser("Alice")
        const projectId = yield* createProject(alice)
        const project = yield* api(alice, "GET", `/projects/${projectId}`)
        expect(project.body).toMatchObject({ permissionPolicy: "ask", permissionTimeoutSeconds: 600 })
        const { sessionId } = yield* asking(alice, projectId, "deploy")
        const [pending] = yield* untilPending(alice, sessionId)
        expect(pending).toMatchObject({
          title: "deploy",
          options: [
            { optionId: "allow", name: "Allow", kind: "allow_once" },
            { optionId: "reject", name: "Reject", kind: "reject_once" }
          ]
        })
        expect(pending.toolCallId).toMatch(/^tool_/)
        const requestId = pending.requestId as string
        const notified = yield* waitUntil(
          "the needs_input notification",
          api(alice, "GET", "/notifications").pipe(
            Effect.map((r) =>
              (r.body.notifications as Array<Event>).find((n) => n.type === "needs_input" && n.sessionId === sessionId)
            )
          )
        )
        expect(notified.body).toContain(requestId)
        expect(notified.body).toContain("reject (Reject)")

        const wrong = yield* answer(alice, sessionId, requestId, { optionId: "maybe" })
        expect(wrong.status).toBe(400)
        const answered = yield* answer(alice, sessionId, requestId, { optionId: "reject" })
        expect(answered.status).toBe(202)
        expect(answered.body).toEqual({ sessionId, requestId, outcome: "reject" })
        yield* untilSaid(alice, sessionId, "Permission for deploy: reject")
        yield* untilSaid(alice, sessionId, "after deploy")
        const recorded = yield* untilEvent(
          alice,
          sessionId,
          "the answer recorded",
          (e) => e.type === "permission-answered"
        )
        expect(recorded).toMatchObject({ requestId, outcome: "reject", by: "user", userId: alice.userId })
        const session = yield* api(alice, "GET", `/sessions/${sessionId}`)
        expect(session.body.snapshot.permissions).toBeUndefined()
      }),
    150_000
  )

  it.scoped(
    "a programmatic client answers over the NATS ingress",
    () =>
      Effect.gen(function* () {
        const alice = yield* makeUser("Alice")
        const projectId = yield* createProject(alice)
        const { sessionId } = yield* asking(alice, projectId, "migrate")
        const [pending] = yield* untilPending(alice, sessionId)
        const minted = yield* api(alice, "POST", "/nats/credentials", { body: {} })
        expect(minted.status).toBe(201)
        const nc = yield* Effect.acquireRelease(
          Effect.promise(() =>
            connect({
              servers: minted.body.natsUrl,
              authenticator: credsAuthenticator(new TextEncoder().encode(minted.body.creds)),
              inboxPrefix: minted.body.inboxPrefix
            })
          ),
          (nc) => Effect.promise(() => nc.close())
        )
        const request = (payload: unknown) =>
          Effect.promise(() =>
            nc.request(`${minted.body.subjectPrefix}.session.answer-permission`, JSON.stringify(payload), {
              timeout: 20_000
            })
          ).pipe(Effect.map((msg) => msg.json<Event>()))
        const reply = yield* request({ sessionId, requestId: pending.requestId, optionId: "allow" })
        expect(reply).toEqual({
          ok: true,
          result: { sessionId, requestId: pending.requestId, outcome: "allow" },
          requestId: expect.stringMatching(/^req_/)
        })
        yield* untilSaid(alice, sessionId, "Permission for migrate: allow")
        yield* untilSaid(alice, sessionId, "after migrate")
        const again = yield* request({ sessionId, requestId: pending.requestId, outcome: "cancelled" })
        expect(again).toMatchObject({ ok: false, error: { code: "invalid_state" } })
      }),
    150_000
  )

  it.scoped(
    "an unanswered request times out to a refusal, and the feed shows the request and its answer",
    () =>
      Effect.gen(function* () {
        const alice = yield* makeUser("Alice")
        const projectId = yield* createProject(alice)
        const patched = yield* setPolicy(alice, projectId, { permissionTimeoutSeconds: 2 })
        expect(patched.status).toBe(200)
        expect(patched.body).toMatchObject({ permissionPolicy: "ask", permissionTimeoutSeconds: 2 })
        const { sessionId } = yield* asking(alice, projectId, "rm -rf build")
        // The session exists (its task may name it a moment before): subscribe from its first event.
        const [pending] = yield* untilPending(alice, sessionId)
        expect(Date.parse(pending.expiresAt) - Date.parse(pending.requestedAt)).toBe(2000)
        const base = yield* GatewayUrl
        const client = yield* Effect.acquireRelease(rawClient(base, alice.token), (c) =>
          Effect.sync(() => isOpen(c) && c.socket.close())
        )
        if (!isOpen(client)) throw new Error(`feed refused: ${client.refused}`)
        client.send({ type: "subscribe", sessions: [{ sessionId, afterSeq: 0 }] })
        const feedEvents = () => client.of("session.event").map((f) => f.event as Event)
        const timedOut = yield* waitUntil(
          "the timeout's answer on the feed",
          Effect.sync(() => feedEvents().find((e) => e.type === "permission-answered")),
          { timeout: "60 seconds", every: "100 millis" }
        )
        expect(timedOut).toMatchObject({ outcome: "reject", by: "timeout" })
        expect(feedEvents().some((e) => e.type === "permission-requested" && e.title === "rm -rf build")).toBe(true)
        yield* waitUntil(
          "the agent's refusal line on the feed",
          Effect.sync(() => (spoken(feedEvents()).includes("Permission for rm -rf build: reject") ? true : undefined)),
          { timeout: "30 seconds", every: "100 millis" }
        )
        const late = yield* answer(alice, sessionId, timedOut.requestId, { optionId: "allow" })
        expect(late.status).toBe(409)
        expect(late.body.code).toBe("invalid_state")
      }),
    150_000
  )

  it.effect(
    "the allow and deny policies answer at once, without anybody",
    () =>
      Effect.gen(function* () {
        const alice = yield* makeUser("Alice")
        const projectId = yield* createProject(alice)
        expect((yield* setPolicy(alice, projectId, { permissionPolicy: "allow" })).body.permissionPolicy).toBe("allow")
        const { sessionId } = yield* asking(alice, projectId, "push")
        yield* untilSaid(alice, sessionId, "Permission for push: allow")
        yield* untilSaid(alice, sessionId, "after push")
        const byPolicy = yield* untilEvent(alice, sessionId, "recorded", (e) => e.type === "permission-answered")
        expect(byPolicy).toMatchObject({ outcome: "allow", by: "policy" })
        yield* untilTask(
          (yield* api(alice, "GET", `/sessions/${sessionId}`)).body.taskId,
          "awaits a follow-up",
          (r) => r.executionStep === "awaiting_followup"
        )

        expect((yield* setPolicy(alice, projectId, { permissionPolicy: "deny" })).body.permissionPolicy).toBe("deny")
        const prompted = yield* api(alice, "POST", `/sessions/${sessionId}/prompt`, {
          body: { prompt: "ask-permission force-push\nsay after force-push" }
        })
        expect(prompted.status).toBe(202)
        yield* untilSaid(alice, sessionId, "Permission for force-push: reject")
        yield* untilSaid(alice, sessionId, "after force-push")
      }),
    150_000
  )

  it.effect(
    "a stale answer is a 409: unknown request, already answered, turn over",
    () =>
      Effect.gen(function* () {
        const alice = yield* makeUser("Alice")
        const projectId = yield* createProject(alice)
        const { sessionId } = yield* asking(alice, projectId, "publish")
        const [pending] = yield* untilPending(alice, sessionId)
        const unknown = yield* answer(alice, sessionId, "perm_999", { optionId: "allow" })
        expect(unknown.status).toBe(409)
        expect(unknown.body).toMatchObject({ code: "invalid_state", details: { reason: "permission_not_pending" } })
        // Text that cannot be stored is refused before anything is asked (ADR 0017).
        expect((yield* answer(alice, sessionId, "perm%00", { optionId: "allow" })).status).toBe(400)
        expect((yield* answer(alice, sessionId, pending.requestId, { optionId: "allow\u0000" })).body.code).toBe(
          "invalid_body"
        )
        const first = yield* answer(alice, sessionId, pending.requestId, { outcome: "cancelled" })
        expect(first.status).toBe(202)
        expect(first.body.outcome).toBe("cancelled")
        const second = yield* answer(alice, sessionId, pending.requestId, { optionId: "allow" })
        expect(second.status).toBe(409)
        expect(second.body.code).toBe("invalid_state")
        yield* untilSaid(alice, sessionId, "Permission for publish: cancelled")
        yield* untilEvent(alice, sessionId, "the turn ends", (e) => e.type === "turn-ended")
        const over = yield* answer(alice, sessionId, pending.requestId, { outcome: "cancelled" })
        expect(over.status).toBe(409)
        expect((yield* api(alice, "GET", `/sessions/${sessionId}`)).body.snapshot.permissions).toBeUndefined()
      }),
    150_000
  )

  it.effect(
    "only members answer: a non-member is refused, an unknown session is not found",
    () =>
      Effect.gen(function* () {
        const alice = yield* makeUser("Alice")
        const mallory = yield* makeUser("Mallory")
        const projectId = yield* createProject(alice)
        const { sessionId } = yield* asking(alice, projectId, "deploy")
        const [pending] = yield* untilPending(alice, sessionId)
        const refused = yield* answer(mallory, sessionId, pending.requestId, { optionId: "allow" })
        expect(refused.status).toBe(403)
        expect((yield* setPolicy(mallory, projectId, { permissionPolicy: "allow" })).status).toBe(403)
        const missing = yield* answer(alice, makeId("sess"), pending.requestId, { optionId: "allow" })
        expect(missing.status).toBe(404)
        // Still waiting for a member.
        const still = yield* untilPending(alice, sessionId)
        expect(still[0].requestId).toBe(pending.requestId)
      }),
    150_000
  )
})
