import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Actors, ControlPlane } from "@sam/actors"
import { Domain, Kv, makeId, Topology } from "@sam/bus"
import { type Duration, Effect, Option } from "effect"
import { expect } from "vitest"
import { ControlPlaneEnv, seedProject } from "../../src/ControlPlaneHarness.js"
import { waitUntil } from "../../src/Env.js"

const { ControlProtocol: C } = Domain

interface TaskRow {
  status: string
  executionStep: string | null
  errorStep: string | null
  errorReason: string | null
  branch: string | null
  commitSha: string | null
  sessionId: string | null
  nodeId: string | null
}

const taskRow = (taskId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<TaskRow>`
      SELECT status, execution_step, error_step, error_reason, branch, commit_sha, session_id, node_id FROM tasks WHERE id = ${taskId}`
    return rows[0]
  })

const until = (taskId: string, done: (row: TaskRow) => boolean, timeout: Duration.DurationInput = "60 seconds") =>
  waitUntil(
    `task ${taskId} to settle`,
    taskRow(taskId).pipe(Effect.map((row) => (row !== undefined && done(row) ? row : undefined))),
    { timeout, every: "100 millis" }
  ).pipe(
    Effect.tapError(() =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const row = yield* taskRow(taskId)
        const events =
          yield* sql`SELECT to_status, reason FROM task_status_events WHERE task_id = ${taskId} ORDER BY id`
        const workspaces =
          yield* sql`SELECT id, status, dispatched_at, error_reason FROM workspaces WHERE task_id = ${taskId}`
        const sessions = yield* sql`SELECT id, status FROM sessions WHERE task_id = ${taskId}`
        const transcript = yield* sql`SELECT seq, type, left(payload::text, 160) AS payload FROM session_events
          WHERE session_id = ${row?.sessionId ?? ""} ORDER BY seq`
        const log = yield* Effect.promise(async () => {
          const { execSync } = await import("node:child_process")
          return execSync(`tail -n 30 /tmp/sam-cp-*/nodes/${row?.nodeId}/vm-agent.log 2>/dev/null || true`).toString()
        })
        console.log("task", JSON.stringify({ row, events, workspaces, sessions, transcript }, null, 1), log)
      })
    )
  )

const submit = (projectId: string, userId: string, prompt: string, mode: "task" | "conversation" = "task") =>
  Effect.gen(function* () {
    const taskId = makeId("task")
    yield* Actors.ask(
      ControlPlane.TaskRef,
      taskId,
      C.TaskSubmit.make({ taskId, projectId: projectId as never, userId: userId as never, prompt, agent: "demo", mode })
    )
    return taskId
  })

layer(ControlPlaneEnv, { excludeTestServices: true, timeout: 120_000 })("a task end to end on a local node", (it) => {
  it.effect(
    "runs in a workspace on a node the provider started, streams the agent's output, and commits to a new branch",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const { projectId, userId } = yield* seedProject()
        const taskId = yield* submit(projectId, userId, "say working on it\nrun echo done > DONE.txt\nsay finished")
        const done = yield* until(taskId, (row) => row.status === "completed" || row.status === "failed")
        expect(done).toMatchObject({ status: "completed", branch: `sam/${taskId}` })
        expect(done.commitSha).toMatch(/^[0-9a-f]{40}$/)

        const path = yield* sql<{ toStatus: string }>`
          SELECT to_status FROM task_status_events WHERE task_id = ${taskId} ORDER BY id`
        expect(path.map((p) => p.toStatus)).toEqual(["queued", "delegated", "in_progress", "completed"])

        // The task and its session are actors of their own: the task's result can be committed before the
        // session shard has written the turn's last events, so wait for the turn's end in the transcript.
        const events = yield* waitUntil(
          "the turn's events in the transcript",
          sql<{ seq: number; type: string; payload: unknown }>`
            SELECT seq::int, type, payload FROM session_events WHERE session_id = ${done.sessionId} ORDER BY seq`.pipe(
            Effect.map((rows) => (rows.some((e) => e.type === "turn-ended") ? rows : undefined))
          )
        )
        expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1))
        const text = JSON.stringify(events.map((e) => e.payload))
        expect(text).toContain("working on it")
        expect(text).toContain("finished")

        const node = yield* sql<{ status: string; agentReadyAt: Date | null }>`
          SELECT status, agent_ready_at FROM nodes WHERE id = ${done.nodeId}`
        expect(node[0]?.status).toBe("running")
        expect(node[0]?.agentReadyAt).not.toBeNull()

        // A second task reuses the warm node.
        const second = yield* submit(projectId, userId, "say again")
        const again = yield* until(second, (row) => row.status === "completed" || row.status === "failed")
        expect(again).toMatchObject({ status: "completed", nodeId: done.nodeId })
      }),
    120_000
  )

  it.effect("a task whose agent crashes ends failed with its step and reason, and so does its session", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { projectId, userId } = yield* seedProject()
      const taskId = yield* submit(projectId, userId, "crash")
      const failed = yield* until(taskId, (row) => row.status === "failed" || row.status === "completed")
      expect(failed.status).toBe("failed")
      // The node's failed result may overtake the session's "running": either step names the agent's failure.
      expect(["agent_session", "running"]).toContain(failed.errorStep)
      expect(failed.errorReason).toMatch(/crash|exit/i)
      const session = yield* waitUntil(
        "session failed",
        sql<{ status: string }>`SELECT status FROM sessions WHERE id = ${failed.sessionId}`.pipe(
          Effect.map((rows) => (rows[0]?.status === "failed" ? rows[0] : undefined))
        )
      )
      expect(session.status).toBe("failed")
      const snapshots = yield* Kv.open(Topology.Buckets.sessionState.name, Domain.SessionSnapshot)
      const snapshot = yield* snapshots.get(failed.sessionId!)
      expect(Option.getOrThrow(snapshot).value.activity).not.toBe("prompting")
    })
  )

  it.effect("a task whose workspace cannot be created ends failed at the workspace step", () =>
    Effect.gen(function* () {
      const { projectId, userId } = yield* seedProject("/nonexistent/repository")
      const taskId = yield* submit(projectId, userId, "say hi")
      const failed = yield* until(taskId, (row) => row.status === "failed" || row.status === "completed")
      expect(failed).toMatchObject({ status: "failed", errorStep: "workspace_ready" })
      expect(failed.errorReason).toContain("workspace failed")
      // Its session, opened with the workspace's dispatch, never started an agent; it fails with the task.
      const sql = yield* SqlClient.SqlClient
      const session = yield* waitUntil(
        "the task's session recorded as failed",
        sql<{
          status: string
          errorReason: string
        }>`SELECT status, error_reason FROM sessions WHERE id = ${failed.sessionId}`.pipe(
          Effect.map((rows) => (rows[0]?.status === "active" ? undefined : rows[0]))
        )
      )
      expect(session).toMatchObject({ status: "failed" })
      expect(session.errorReason).toContain("workspace failed")
      // The snapshot follows the commit (it is written after it): awaited, not read at once.
      const snapshots = yield* Kv.open(Topology.Buckets.sessionState.name, Domain.SessionSnapshot)
      yield* waitUntil(
        "the session's snapshot says error",
        snapshots
          .get(failed.sessionId!)
          .pipe(Effect.map((entry) => (Option.getOrUndefined(entry)?.value.activity === "error" ? true : undefined)))
      )
    })
  )

  it.effect("bad input gets a clear answer and changes nothing", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { projectId, userId } = yield* seedProject()
      // A project through its actor: created once; the same create again says so and changes nothing.
      const projectCreate = C.ProjectCreate.make({
        projectId: makeId("proj"),
        ownerId: userId as never,
        name: "by actor",
        repoUrl: "/srv/repo"
      })
      expect(yield* Actors.ask(ControlPlane.ProjectRef, projectCreate.body.projectId, projectCreate)).toMatchObject({
        reply: { ok: true }
      })
      const again2 = C.ProjectCreate.make({ ...projectCreate.body, name: "renamed" })
      expect(yield* Actors.ask(ControlPlane.ProjectRef, again2.body.projectId, again2)).toMatchObject({
        reply: { ok: true, duplicate: true }
      })
      const named = yield* sql<{ name: string; members: number }>`
        SELECT name, (SELECT count(*)::int FROM project_members m WHERE m.project_id = p.id) AS members
        FROM projects p WHERE id = ${projectCreate.body.projectId}`
      expect(named[0]).toEqual({ name: "by actor", members: 1 })

      const unknown = makeId("task")
      const cancelUnknown = yield* Actors.ask(ControlPlane.TaskRef, unknown, C.TaskCancel.make({ taskId: unknown }))
      expect(cancelUnknown).toMatchObject({ reply: { ok: false, code: "not_found" } })
      expect(yield* taskRow(unknown)).toBeUndefined()

      // A submit from someone who is not (or no longer) a member, as one on its way while they were removed: refused.
      const outsider = makeId("user")
      yield* sql`INSERT INTO users (id, display_name) VALUES (${outsider}, 'Removed')`
      const late = makeId("task")
      const refused = yield* Actors.ask(
        ControlPlane.TaskRef,
        late,
        C.TaskSubmit.make({ taskId: late, projectId: projectId as never, userId: outsider as never, prompt: "say in" })
      )
      expect(refused).toMatchObject({ reply: { ok: false, code: "not_a_member" } })
      expect(yield* taskRow(late)).toBeUndefined()

      const taskId = yield* submit(projectId, userId, "say once")
      const again = yield* Actors.ask(
        ControlPlane.TaskRef,
        taskId,
        C.TaskSubmit.make({ taskId, projectId: projectId as never, userId: userId as never, prompt: "say twice" })
      )
      expect(again).toMatchObject({ reply: { ok: true, duplicate: true } })
      const done = yield* until(taskId, (row) => row.status === "completed" || row.status === "failed")
      expect(done.status).toBe("completed")
      const prompt = yield* sql<{ prompt: string }>`SELECT prompt FROM tasks WHERE id = ${taskId}`
      expect(prompt[0]?.prompt).toBe("say once")

      const cancelDone = yield* Actors.ask(ControlPlane.TaskRef, taskId, C.TaskCancel.make({ taskId }))
      expect(cancelDone).toMatchObject({
        reply: {
          ok: false,
          code: "invalid_transition",
          message: "invalid task transition completed → cancelled; allowed from completed: none"
        }
      })
      expect((yield* taskRow(taskId))?.status).toBe("completed")
    })
  )
})
