import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Domain, makeId, Publish, Subjects } from "@sam/bus"
import { Effect } from "effect"
import { expect } from "vitest"
import { Nats, waitUntil } from "../../src/Env.js"
import { GatewayEnv, http, makeUser, type TestUser, tempDir } from "../../src/index.js"
import { makeRepo } from "../../src/Repo.js"

const CONSUMERS = ["notifications-tasks", "notifications-sessions"]

interface Row {
  id: string
  userId: string
  taskId: string | null
  sessionId: string | null
  type: string
  priority: boolean
  title: string
  body: string | null
}

const rowsOf = (projectId: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql<Row>`
      SELECT id, user_id, task_id, session_id, type, priority, title, body FROM notifications
      WHERE project_id = ${projectId} ORDER BY created_at, id`
  )

const waitForRow = (projectId: string, what: string, match: (row: Row) => boolean) =>
  waitUntil(what, rowsOf(projectId).pipe(Effect.map((rows) => rows.find(match))), { timeout: "60 seconds" })

/** Every event the reactor could still be working on has been acknowledged. */
const drained = waitUntil(
  "the notification consumers to catch up",
  Effect.gen(function* () {
    const { jsm } = yield* Nats
    for (const name of CONSUMERS) {
      const info = yield* Effect.promise(() => jsm.consumers.info("SAM_EVT", name))
      if (info.num_pending > 0 || info.num_ack_pending > 0) return undefined
    }
    return true
  }),
  { timeout: "30 seconds" }
)

/** How many `notification.created` messages the stream holds per subject, for one project. */
const publishedEvents = (projectId: string) =>
  Effect.gen(function* () {
    const { jsm } = yield* Nats
    const info = yield* Effect.promise(() =>
      jsm.streams.info("SAM_EVT", { subjects_filter: `sam.evt.${projectId}.notification.>` })
    )
    return (info.state.subjects ?? {}) as Record<string, number>
  })

/** The stored events are exactly one per row, each carrying its row. */
const expectOneEventPerRow = (projectId: string) =>
  Effect.gen(function* () {
    const { jsm } = yield* Nats
    const rows = yield* rowsOf(projectId)
    const events = yield* publishedEvents(projectId)
    expect(events).toEqual(
      Object.fromEntries(rows.map((row) => [Domain.Notifications.notificationSubject(projectId, row.id), 1]))
    )
    for (const row of rows) {
      const stored = yield* Effect.promise(() =>
        jsm.streams.getMessage("SAM_EVT", {
          last_by_subj: Domain.Notifications.notificationSubject(projectId, row.id)
        })
      )
      const envelope = stored!.json<{ id: string; type: string; body: { notification: Record<string, unknown> } }>()
      expect(envelope.type).toBe("notification.created")
      expect(envelope.id).toBe(Domain.Notifications.notificationMessageId(row.id))
      expect(envelope.body.notification).toMatchObject({ ...row, projectId, readAt: null })
    }
  })

/** Deliver an already stored event once more, as a redelivery would (a new stream message, same envelope). */
const redeliver = (subject: string) =>
  Effect.gen(function* () {
    const { js, jsm } = yield* Nats
    const stored = yield* Effect.promise(() => jsm.streams.getMessage("SAM_EVT", { last_by_subj: subject }))
    yield* Effect.promise(() => js.publish(subject, stored!.data, { msgID: makeId("msg") }))
  })

/** Publishes again the last message on one of `subjects` that contains `text`. */
const redeliverWith = (subjects: ReadonlyArray<string>, text: string) =>
  Effect.gen(function* () {
    const { js, jsm } = yield* Nats
    for (const subject of subjects) {
      const stored = yield* Effect.promise(() =>
        jsm.streams.getMessage("SAM_EVT", { last_by_subj: subject }).catch(() => undefined)
      )
      if (stored != null && new TextDecoder().decode(stored.data).includes(text)) {
        yield* Effect.promise(() => js.publish(subject, stored.data, { msgID: makeId("msg") }))
        return
      }
    }
    return yield* Effect.die(new Error(`no message on ${subjects.join(" or ")} holds ${text}`))
  })

const projectOf = (user: TestUser) =>
  Effect.gen(function* () {
    const repo = makeRepo(join(yield* Effect.promise(() => tempDir("sam-repo-")), "repo"))
    const project = yield* http("POST", "/api/v1/projects", {
      token: user.token,
      body: { name: "demo", repoUrl: repo }
    })
    return project.body.id as string
  })

const runTask = (user: TestUser, projectId: string, prompt: string) =>
  http("POST", `/api/v1/projects/${projectId}/tasks`, { token: user.token, body: { prompt } }).pipe(
    Effect.map((created) => created.body.id as string)
  )

const taskStatus = (taskId: string, done: ReadonlyArray<string>) =>
  waitUntil(
    `task ${taskId} to be ${done.join(" or ")}`,
    Effect.flatMap(
      SqlClient.SqlClient,
      (sql) => sql<{ status: string }>`SELECT status FROM tasks WHERE id = ${taskId}`
    ).pipe(Effect.map((rows) => (done.includes(rows[0]?.status ?? "") ? rows[0]!.status : undefined))),
    { timeout: "60 seconds" }
  )

const count = (rows: ReadonlyArray<Row>, type: string) => rows.filter((row) => row.type === type).length

layer(GatewayEnv, { excludeTestServices: true, timeout: 180_000 })("notifications from domain events", (it) => {
  it.effect("a completed task tells its creator once, with one plan per turn and the event for each row", () =>
    Effect.gen(function* () {
      const alice = yield* makeUser("Alice")
      const projectId = yield* projectOf(alice)
      const taskId = yield* runTask(alice, projectId, "plan look | write\nplan look | write | check\nsay all done")
      expect(yield* taskStatus(taskId, ["completed", "failed"])).toBe("completed")
      const complete = yield* waitForRow(projectId, "task_complete", (row) => row.type === "task_complete")
      expect(complete).toMatchObject({ userId: alice.userId, taskId, priority: true, title: "Task completed" })
      expect(complete.body).toContain("plan look | write")
      const plan = yield* waitForRow(projectId, "the plan", (row) => row.title === "The agent made a plan")
      expect(plan).toMatchObject({ type: "progress", priority: false })
      expect(plan.body).toContain("look")
      yield* drained

      // The same source events again change nothing: no row, no event.
      yield* redeliver(Subjects.event(projectId, "task", taskId, "task.status"))
      yield* drained
      const rows = yield* rowsOf(projectId)
      expect(count(rows, "task_complete")).toBe(1)
      expect(rows.filter((row) => row.title === "The agent made a plan")).toHaveLength(1)
      expect(count(rows, "error") + count(rows, "needs_input")).toBe(0)
      expect(rows.every((row) => row.userId === alice.userId)).toBe(true)
      yield* expectOneEventPerRow(projectId)

      // A pull request for the task (nothing opens one yet) maps to pr_created.
      yield* Publish.publish(
        Subjects.event(projectId, "task", taskId, Domain.Notifications.PullRequestOpened.type),
        Domain.Notifications.PullRequestOpened.make({ taskId: taskId as never, url: "https://github.com/o/r/pull/7" })
      )
      const pr = yield* waitForRow(projectId, "pr_created", (row) => row.type === "pr_created")
      expect(pr).toMatchObject({ priority: false, body: "https://github.com/o/r/pull/7", userId: alice.userId })
    })
  )

  it.effect("a task whose agent works a while says once that it runs; its other steps say nothing", () =>
    Effect.gen(function* () {
      const alice = yield* makeUser("Alice")
      const projectId = yield* projectOf(alice)
      // the agent's start reaches the task well before its result (a fast turn's result may overtake it)
      const taskId = yield* runTask(alice, projectId, "run sleep 2\nsay done")
      expect(yield* taskStatus(taskId, ["completed", "failed"])).toBe("completed")
      yield* waitForRow(projectId, "task_complete", (row) => row.type === "task_complete")
      yield* drained
      const rows = yield* rowsOf(projectId)
      expect(rows.filter((row) => row.title === "Task is running")).toEqual([
        expect.objectContaining({ type: "progress", priority: false, taskId, userId: alice.userId })
      ])
      // queued, delegated and the steps between are no one's business
      expect(rows.map((row) => row.type).sort()).toEqual(["progress", "task_complete"])
    })
  )

  it.effect("a crashing task is one error for its creator (its failed session adds none)", () =>
    Effect.gen(function* () {
      const alice = yield* makeUser("Alice")
      const projectId = yield* projectOf(alice)
      const taskId = yield* runTask(alice, projectId, "crash")
      expect(yield* taskStatus(taskId, ["completed", "failed"])).toBe("failed")
      const error = yield* waitForRow(projectId, "the error", (row) => row.type === "error")
      expect(error).toMatchObject({ userId: alice.userId, taskId, priority: true, title: "Task failed" })
      expect(error.body).toMatch(/crash|exit/i)
      yield* drained
      const rows = yield* rowsOf(projectId)
      expect(count(rows, "error")).toBe(1)
      expect(count(rows, "task_complete")).toBe(0)
      yield* expectOneEventPerRow(projectId)
    })
  )

  it.effect("an agent asking for permission needs input; cancelling the task ends its session", () =>
    Effect.gen(function* () {
      const alice = yield* makeUser("Alice")
      const projectId = yield* projectOf(alice)
      const taskId = yield* runTask(alice, projectId, "say checking\nask-permission deploy to production")
      const asked = yield* waitForRow(projectId, "needs_input", (row) => row.type === "needs_input")
      expect(asked).toMatchObject({ userId: alice.userId, taskId, priority: true })
      expect(asked.body).toContain("deploy to production")
      expect(asked.sessionId).toMatch(/^sess_/)

      // the request came alone or in a batch of entries persisted together: the message that carried it, again
      yield* redeliverWith(
        ["session.event", "session.event-batch"].map((type) =>
          Subjects.event(projectId, "session", asked.sessionId!, type)
        ),
        "permission-requested"
      )
      const cancelled = yield* http("POST", `/api/v1/tasks/${taskId}/cancel`, { token: alice.token, body: {} })
      expect(cancelled.status).toBe(200)
      const ended = yield* waitForRow(projectId, "session_ended", (row) => row.type === "session_ended")
      expect(ended).toMatchObject({ userId: alice.userId, sessionId: asked.sessionId, priority: false })
      yield* drained
      const rows = yield* rowsOf(projectId)
      expect(count(rows, "needs_input")).toBe(1)
      expect(count(rows, "session_ended")).toBe(1)
      expect(count(rows, "error") + count(rows, "task_complete")).toBe(0)
      yield* expectOneEventPerRow(projectId)
    })
  )

  it.effect("a session without a task notifies every owner of its project", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const alice = yield* makeUser("Alice")
      const carol = yield* makeUser("Carol")
      const dave = yield* makeUser("Dave")
      const projectId = yield* projectOf(alice)
      yield* sql`INSERT INTO project_members (project_id, user_id, role) VALUES
        (${projectId}, ${carol.userId}, 'owner'), (${projectId}, ${dave.userId}, 'member')`
      const sessionId = makeId("sess")
      yield* sql`INSERT INTO sessions (id, project_id, agent, status) VALUES (${sessionId}, ${projectId}, 'demo', 'stopped')`
      yield* Publish.publish(
        Subjects.event(projectId, "session", sessionId, "session.stopped"),
        Domain.SessionEvents.SessionStopped.make({ sessionId: sessionId as never, reason: "stopped by its owner" })
      )
      yield* waitUntil(
        "both owners told",
        rowsOf(projectId).pipe(Effect.map((rows) => (rows.length >= 2 ? rows : undefined)))
      )
      yield* drained
      const rows = yield* rowsOf(projectId)
      expect(rows.map((row) => row.userId).sort()).toEqual([alice.userId, carol.userId].sort())
      expect(rows.every((row) => row.type === "session_ended" && row.body === "stopped by its owner")).toBe(true)
      yield* expectOneEventPerRow(projectId)
    })
  )

  it.effect("lists notifications in the order their events happened, not the order they were handled", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const alice = yield* makeUser("Alice")
      const projectId = yield* projectOf(alice)
      const [earlier, later] = [makeId("sess"), makeId("sess")]
      yield* sql`INSERT INTO sessions (id, project_id, agent, status)
        VALUES (${earlier}, ${projectId}, 'demo', 'stopped'), (${later}, ${projectId}, 'demo', 'stopped')`
      const stopped = (sessionId: string, at: Date) =>
        Publish.publish(
          Subjects.event(projectId, "session", sessionId, "session.stopped"),
          Domain.SessionEvents.SessionStopped.make({ sessionId: sessionId as never, reason: "stopped" }, { at })
        )
      // the later event is handled first (the task and session consumers each keep their own pace)
      yield* stopped(later, new Date())
      yield* waitForRow(projectId, "the later event's notification", (row) => row.sessionId === later)
      yield* stopped(earlier, new Date(Date.now() - 60_000))
      yield* waitForRow(projectId, "the earlier event's notification", (row) => row.sessionId === earlier)
      const listed = yield* http("GET", "/api/v1/notifications", { token: alice.token })
      const sessions = (listed.body.notifications as ReadonlyArray<{ sessionId: string }>)
        .map((n) => n.sessionId)
        .filter((id) => id === earlier || id === later)
      expect(sessions).toEqual([later, earlier])
    })
  )
})
