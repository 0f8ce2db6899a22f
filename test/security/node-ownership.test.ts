import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Actors, ControlPlane } from "@sam/actors"
import { Domain, type Envelope, encode, Kv, makeId, Nats, natsLayer, Subjects, Topology } from "@sam/bus"
import { Context, type Duration, Effect, Layer, Option, Redacted } from "effect"
import { expect } from "vitest"
import { LocalNodes, makeControlPlaneEnv, seedProject } from "../src/ControlPlaneHarness.js"
import { waitUntil } from "../src/Env.js"

/**
 * A node belongs to one user (design §9, ADR 0015): tasks go only on their submitter's nodes, and the
 * control plane accepts a node's reports only about its owner's work that is still live. The whole
 * control plane runs here with the local provider starting real vm-agents; a node is impersonated
 * with the very credentials the provider minted for it, publishing on its own subjects as the broker
 * allows.
 */

const { ControlProtocol: C, NodeProtocol: N } = Domain

interface TaskRow {
  readonly status: string
  readonly executionStep: string | null
  readonly errorReason: string | null
  readonly nodeId: string | null
  readonly workspaceId: string | null
  readonly sessionId: string | null
}

const taskRow = (taskId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* sql<TaskRow>`
      SELECT status, execution_step, error_reason, node_id, workspace_id, session_id FROM tasks WHERE id = ${taskId}`
    return row
  })

const until = (taskId: string, done: (row: TaskRow) => boolean, timeout: Duration.DurationInput = "60 seconds") =>
  waitUntil(
    `task ${taskId}`,
    taskRow(taskId).pipe(Effect.map((row) => (row !== undefined && done(row) ? row : undefined))),
    { timeout, every: "100 millis" }
  )

const ended = (row: TaskRow) => row.status === "completed" || row.status === "failed"

const submit = (owner: { projectId: string; userId: string }, prompt: string, mode: "task" | "conversation") =>
  Effect.gen(function* () {
    const taskId = makeId("task")
    yield* Actors.ask(
      ControlPlane.TaskRef,
      taskId,
      C.TaskSubmit.make({
        taskId,
        projectId: owner.projectId as never,
        userId: owner.userId as never,
        prompt,
        agent: "demo",
        mode
      })
    )
    return taskId
  })

/** Everything a report could change about a task, its workspace and its session. */
const observe = (taskId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const task = yield* taskRow(taskId)
    const snapshots = yield* Kv.open(Topology.Buckets.sessionState.name, Domain.SessionSnapshot)
    return {
      task,
      session: (yield* sql`SELECT status, last_seq, error_reason FROM sessions WHERE id = ${task?.sessionId ?? ""}`)[0],
      transcript:
        yield* sql`SELECT seq, type, payload FROM session_events WHERE session_id = ${task?.sessionId ?? ""} ORDER BY seq`,
      workspace: (yield* sql`SELECT status, error_reason FROM workspaces WHERE id = ${task?.workspaceId ?? ""}`)[0],
      bootLog:
        yield* sql`SELECT step, status, message FROM workspace_boot_log WHERE workspace_id = ${task?.workspaceId ?? ""} ORDER BY id`,
      snapshot: Option.getOrUndefined(yield* snapshots.get(task?.sessionId ?? ""))?.value
    }
  })

/** Connect as `nodeId` with the credentials the local provider minted for it, and publish its reports. */
const asNode = (nodeId: string) =>
  Effect.gen(function* () {
    const nodes = yield* LocalNodes
    const creds = yield* Effect.promise(() => readFile(join(nodes.dir, nodeId, "node.creds"), "utf8"))
    const context = yield* Layer.build(
      natsLayer({
        servers: nodes.natsUrl,
        creds: Redacted.make(creds),
        name: `forger-${nodeId}`,
        inboxPrefix: Subjects.nodeInboxPrefix(nodeId)
      })
    )
    const { nc } = Context.get(context, Nats)
    /** publish on the node's own report subject, as the broker allows it */
    return (envelope: Envelope, entityId?: string) =>
      Effect.promise(async () => {
        nc.publish(Subjects.agentReport(nodeId, envelope.type, entityId), encode(envelope))
        await nc.flush()
      })
  })

const audited = (nodeId: string, messageIds: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* waitUntil(
      `${messageIds.length} reports from ${nodeId} audited`,
      sql<{ type: string; entityId: string; messageId: string; reason: string }>`
        SELECT type, entity_id, message_id, reason FROM dropped_reports
        WHERE node_id = ${nodeId} AND message_id IN ${sql.in(messageIds)} ORDER BY id`.pipe(
        Effect.map((rows) => (rows.length === messageIds.length ? rows : undefined))
      ),
      { timeout: "15 seconds" }
    )
  })

/** As the session's own node: a text event and a "prompting" activity, published late; the rows that audit them. */
const reportLate = (nodeId: string, sessionId: string, text: string) =>
  Effect.gen(function* () {
    const publish = yield* asNode(nodeId)
    const event = N.SessionEvent.make({
      sessionId: sessionId as never,
      nodeSeq: 1000,
      promptEpoch: 1,
      event: { type: "text", text }
    })
    const activity = N.SessionActivity.make({
      sessionId: sessionId as never,
      activity: "prompting",
      promptEpoch: 2,
      observedAt: new Date().toISOString()
    })
    yield* publish(event, sessionId)
    yield* publish(activity, sessionId)
    return yield* audited(nodeId, [event.id, activity.id])
  })

const env = makeControlPlaneEnv({ runtime: "host" })

layer(env, { excludeTestServices: true, timeout: 180_000 })("a node belongs to one user", (it) => {
  it.effect(
    "two users' tasks submitted together go to different nodes, each its submitter's; one user's tasks share a node",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const alice = yield* seedProject()
        const bob = yield* seedProject()
        // Alice's node is still being provisioned when Bob's task and her second one arrive.
        const aliceFirst = yield* submit(alice, "say alice one", "task")
        const [bobTask, aliceSecond] = yield* Effect.all(
          [submit(bob, "say bob one", "task"), submit(alice, "say alice two", "task")],
          { concurrency: "unbounded" }
        )
        const [a1, b1, a2] = yield* Effect.all([
          until(aliceFirst, ended),
          until(bobTask, ended),
          until(aliceSecond, ended)
        ])
        expect([a1.status, b1.status, a2.status]).toEqual(["completed", "completed", "completed"])
        expect(b1.nodeId).not.toBe(a1.nodeId)
        expect(a2.nodeId).toBe(a1.nodeId)
        const owners = yield* sql<{ id: string; ownerId: string | null }>`
          SELECT id, owner_id FROM nodes WHERE id IN ${sql.in([a1.nodeId!, b1.nodeId!])}`
        expect(Object.fromEntries(owners.map((n) => [n.id, n.ownerId]))).toEqual({
          [a1.nodeId!]: alice.userId,
          [b1.nodeId!]: bob.userId
        })
      })
  )

  it.scoped("a node's reports about another user's session, workspace and task change nothing and are audited", () =>
    Effect.gen(function* () {
      const alice = yield* seedProject()
      const bob = yield* seedProject()
      // Alice's conversation stays live (awaiting her follow-up); Bob's task brings up Bob's node.
      const aliceTask = yield* submit(alice, "say hello alice", "conversation")
      const bobTask = yield* submit(bob, "say hello bob", "task")
      const a = yield* until(aliceTask, (row) => row.executionStep === "awaiting_followup" || ended(row))
      const b = yield* until(bobTask, ended)
      expect(a.status).toBe("in_progress")
      expect(b.nodeId).not.toBe(a.nodeId)
      const before = yield* observe(aliceTask)
      expect(before.transcript.length).toBeGreaterThan(0)

      const publish = yield* asNode(b.nodeId!)
      const sessionId = a.sessionId as never
      const workspaceId = a.workspaceId as never
      const forged = [
        [
          N.SessionEvent.make({ sessionId, nodeSeq: 1000, promptEpoch: 1, event: { type: "text", text: "forged" } }),
          a.sessionId
        ],
        [
          N.SessionActivity.make({
            sessionId,
            activity: "prompting",
            promptEpoch: 1,
            observedAt: new Date().toISOString()
          }),
          a.sessionId
        ],
        [N.WorkspaceStatusReport.make({ workspaceId, status: "error", reason: "forged" }), undefined],
        [N.BootLog.make({ workspaceId, step: "clone", status: "failed", message: "forged" }), undefined],
        [N.BootLogs.make({ workspaceId, lines: [{ step: "clone", status: "failed", message: "forged" }] }), undefined],
        [N.TaskResult.make({ taskId: aliceTask, sessionId, outcome: "failed", reason: "forged" }), undefined]
      ] as const
      for (const [envelope, entityId] of forged) yield* publish(envelope, entityId ?? undefined)

      const rows = yield* audited(
        b.nodeId!,
        forged.map(([envelope]) => envelope.id)
      )
      // Reports about different entities are handled side by side: compare them in any order.
      expect(rows.map((row) => [row.type, row.reason]).sort()).toEqual([
        ["session.activity-reported", "not_the_node_owners"],
        ["session.event-reported", "not_the_node_owners"],
        ["task.result", "not_the_node_owners"],
        ["workspace.bootlog-reported", "not_the_node_owners"],
        ["workspace.bootlogs-reported", "not_the_node_owners"],
        ["workspace.status-reported", "not_the_node_owners"]
      ])
      expect(yield* observe(aliceTask)).toEqual(before)

      // A result for the node's own task, or for a task no one knows, that names Alice's session: neither
      // silences what Alice's node says about her session (the ingress once took it as that session's end).
      const ownTask = N.TaskResult.make({ taskId: bobTask as never, sessionId, outcome: "failed", reason: "forged" })
      const noTask = N.TaskResult.make({ taskId: makeId("task"), sessionId, outcome: "failed", reason: "forged" })
      yield* publish(ownTask, undefined)
      yield* publish(noTask, undefined)
      const refusedResult = yield* audited(b.nodeId!, [ownTask.id])
      expect(refusedResult.map((row) => [row.type, row.reason])).toEqual([["task.result", "not_the_tasks_session"]])
      expect((yield* taskRow(bobTask))?.status).toBe(b.status)

      // The ingress carries on: Alice's own node still reports her follow-up.
      const prompted = yield* Actors.ask(
        ControlPlane.SessionRef,
        a.sessionId!,
        C.SessionPromptCommand.make({ sessionId, prompt: "say second answer" })
      )
      expect(prompted).toMatchObject({ reply: { ok: true } })
      const sql = yield* SqlClient.SqlClient
      yield* waitUntil(
        "Alice's follow-up in her transcript",
        sql<{ payload: unknown }>`SELECT payload FROM session_events WHERE session_id = ${a.sessionId}`.pipe(
          Effect.map((rows) => (JSON.stringify(rows).includes("second answer") ? rows : undefined))
        ),
        { timeout: "30 seconds" }
      )
    })
  )

  it.scoped(
    "a node's large report about a session no one knows is refused at the ingress; its audit keeps only a prefix",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const alice = yield* seedProject()
        const done = yield* until(yield* submit(alice, "say hello", "task"), ended)
        const publish = yield* asNode(done.nodeId!)
        // As a node filling SAM's storage: reports of the largest size a node may send, about random sessions.
        const ghost = makeId("sess")
        const text = "x".repeat(200_000)
        const report = N.SessionEvents.make({
          sessionId: ghost as never,
          promptEpoch: 1,
          events: [1, 2, 3, 4].map((nodeSeq) => ({ nodeSeq, event: { type: "text" as const, text } }))
        })
        expect(encode(report).length).toBeGreaterThan(800_000)
        yield* publish(report, ghost)
        const rows = yield* waitUntil(
          "the report audited",
          sql<{ reason: string; payload: string }>`
            SELECT reason, payload FROM dropped_reports WHERE message_id = ${report.id}`.pipe(
            Effect.map((rows) => (rows.length > 0 ? rows : undefined))
          ),
          { timeout: "15 seconds" }
        )
        expect(rows.map((row) => [row.reason, row.payload.length < 5_000])).toEqual([["unknown_session", true]])
        expect(rows[0]?.payload.startsWith(JSON.stringify(report.body).slice(0, 1_000))).toBe(true)
        expect(rows[0]?.payload).toContain("truncated")
        // Refused where it entered: no second stored copy as a command to the session actor.
        expect(yield* sql`SELECT 1 FROM actor_inbox WHERE message_id = ${report.id}`).toEqual([])
      })
  )

  it.scoped(
    "a cancelled task's session takes no more reports from its node, whose reports about it passed before",
    () =>
      Effect.gen(function* () {
        const alice = yield* seedProject()
        const taskId = yield* submit(alice, "say waiting for you", "conversation")
        // The agent's reports about the session passed (the ingress has seen this node report about it) and
        // its turn ended: the conversation waits for a follow-up. The owner cancels the task.
        const waiting = yield* until(taskId, (row) => row.executionStep === "awaiting_followup")
        yield* Actors.ask(ControlPlane.TaskRef, taskId, C.TaskCancel.make({ taskId: taskId as never }))
        const before = yield* waitUntil(
          "the task cancelled and its session stopped",
          observe(taskId).pipe(
            Effect.map((seen) =>
              seen.task?.status === "cancelled" &&
              (seen.session as { status?: string } | undefined)?.status === "stopped" &&
              seen.snapshot?.activity === "stopped"
                ? seen
                : undefined
            )
          ),
          { timeout: "30 seconds" }
        )
        const rows = yield* reportLate(waiting.nodeId!, waiting.sessionId!, "appended after the task was cancelled")
        expect(rows.map((row) => row.type)).toEqual(["session.event-reported", "session.activity-reported"])
        for (const row of rows) expect(["session_ended", "task_ended"]).toContain(row.reason)
        expect(yield* observe(taskId)).toEqual(before)
      })
  )

  it.scoped(
    "a node's reports sent before its task's result all land, however far the task actor runs ahead of the session's",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const alice = yield* seedProject()
        const taskId = yield* submit(alice, "say waiting for you", "conversation")
        const waiting = yield* until(taskId, (row) => row.executionStep === "awaiting_followup")
        // As the node: a run of output, then the task's result at once. The ingress passes them on in this
        // order, but the result is one command to the task actor while the output is many to the session
        // actor, so the task ends while its output is still being written (as after a stall of Postgres).
        const publish = yield* asNode(waiting.nodeId!)
        const sent: Array<string> = []
        for (let i = 0; i < 200; i++) {
          const event = N.SessionEvent.make({
            sessionId: waiting.sessionId as never,
            nodeSeq: 1000 + i,
            promptEpoch: 1,
            event: { type: "text", text: `before the result ${i}` }
          })
          sent.push(event.id)
          yield* publish(event, waiting.sessionId!)
        }
        yield* publish(
          N.TaskResult.make({
            taskId: taskId as never,
            sessionId: waiting.sessionId as never,
            outcome: "no_changes"
          }),
          waiting.sessionId!
        )
        expect((yield* until(taskId, ended)).status).toBe("completed")
        const landed = yield* waitUntil(
          "each of the 200 events in the transcript or audited as dropped",
          Effect.all({
            written: sql<{ text: string }>`
              SELECT payload->>'text' AS text FROM session_events
              WHERE session_id = ${waiting.sessionId!} AND payload->>'text' LIKE 'before the result %' ORDER BY seq`,
            dropped: sql<{ reason: string }>`
              SELECT reason FROM dropped_reports WHERE message_id IN ${sql.in(sent)}`
          }).pipe(Effect.map((seen) => (seen.written.length + seen.dropped.length >= 200 ? seen : undefined))),
          { timeout: "30 seconds" }
        )
        expect(landed.dropped).toEqual([])
        expect(landed.written.map((row) => row.text)).toEqual(sent.map((_, i) => `before the result ${i}`))
      })
  )

  it.scoped("a task's own node that reports its work on another branch fails the task, recording no branch", () =>
    Effect.gen(function* () {
      const alice = yield* seedProject()
      const taskId = yield* submit(alice, "say waiting for you", "conversation")
      const waiting = yield* until(taskId, (row) => row.executionStep === "awaiting_followup")
      const publish = yield* asNode(waiting.nodeId!)
      // another task's branch: its pull request would have been opened from it, and recorded, for this task
      const other = `sam/${makeId("task")}`
      yield* publish(
        N.TaskResult.make({
          taskId: taskId as never,
          sessionId: waiting.sessionId as never,
          outcome: "committed",
          branch: other,
          commitSha: "0".repeat(40)
        }),
        waiting.sessionId!
      )
      const done = yield* until(taskId, ended)
      expect(done.status).toBe("failed")
      expect(done.errorReason).toContain(`not the task's branch sam/${taskId}`)
      const sql = yield* SqlClient.SqlClient
      const [row] = yield* sql<{ branch: string | null }>`SELECT branch FROM tasks WHERE id = ${taskId}`
      expect(row?.branch).toBeNull()
    })
  )

  it.scoped("a completed task's transcript is final: its own node's later reports are refused and audited", () =>
    Effect.gen(function* () {
      const alice = yield* seedProject()
      const taskId = yield* submit(alice, "say the work is done", "task")
      const done = yield* until(taskId, ended)
      expect(done.status).toBe("completed")
      // The node's own reports from before its result still land, even after the task completed; then the
      // session sleeps (ADR 0023).
      const before = yield* waitUntil(
        "the session's last reports applied and the session asleep",
        observe(taskId).pipe(
          Effect.map((seen) =>
            // the row as well as the snapshot: one read of each is not atomic, and the snapshot follows the commit
            seen.snapshot?.activity === "sleeping" &&
            (seen.session as { status?: string } | undefined)?.status === "sleeping" &&
            JSON.stringify(seen.transcript).includes("done")
              ? seen
              : undefined
          )
        ),
        { timeout: "15 seconds" }
      )

      const rows = yield* reportLate(done.nodeId!, done.sessionId!, "appended after the task completed")
      expect(rows.map((row) => [row.type, row.reason])).toEqual([
        ["session.event-reported", "task_ended"],
        ["session.activity-reported", "task_ended"]
      ])
      expect(yield* observe(taskId)).toEqual(before)

      // The session actor refuses the same on its own, in its order (its task ended and it went to sleep), for
      // an ingress that no longer remembers the result: restarted, or past the 10,000 it keeps.
      const late = N.SessionEvent.make({
        sessionId: done.sessionId as never,
        nodeSeq: 2000,
        promptEpoch: 1,
        event: { type: "text", text: "past an ingress that forgot the result" }
      })
      const applied = yield* Actors.ask(
        ControlPlane.SessionRef,
        done.sessionId!,
        C.SessionReport.make(
          { nodeId: done.nodeId as never, report: { type: "session.event-reported", body: late.body } },
          { id: late.id }
        )
      )
      expect(applied).toMatchObject({ reply: { ok: false, code: "dropped" } })
      expect((yield* audited(done.nodeId!, [late.id])).map((row) => row.reason)).toEqual(["task_ended"])
      expect(yield* observe(taskId)).toEqual(before)

      // Nor does the session take a follow-up prompt that would make its node report more: it sleeps (ADR 0023).
      const prompted = yield* Actors.ask(
        ControlPlane.SessionRef,
        done.sessionId!,
        C.SessionPromptCommand.make({ sessionId: done.sessionId as never, prompt: "say more" })
      )
      expect(prompted).toMatchObject({ reply: { ok: false, code: "session_sleeping" } })
      expect(yield* observe(taskId)).toEqual(before)
    })
  )
})
