import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Accounts, Consume, Domain, makeId, Nats, natsLayer, Publish, Subjects, Topology } from "@sam/bus"
import { Gateway } from "@sam/gateway"
import { Context, Effect, Layer } from "effect"
import { expect } from "vitest"
import { makeControlPlaneEnv } from "../../src/ControlPlaneHarness.js"
import { waitUntil } from "../../src/Env.js"
import { GatewayUrl, http, makeUser, type TestUser } from "../../src/GatewayHarness.js"
import { partyCredentials } from "../../src/Parties.js"
import { type PrivateNats, startPrivateNats } from "../../src/PrivateNats.js"
import { createProject, submitTask, taskRow, untilTask } from "../gateway/RestKit.js"

/**
 * Rejections come home and sessions end their tasks (ADR 0019), against the whole control plane and
 * the gateway with real vm-agents; a node that refuses commands is impersonated with a node account
 * of its own on the same broker (it can publish only as itself), as a vm-agent would refuse them.
 */

const { NodeProtocol: N } = Domain

class Broker extends Context.Tag("test/LooseEndsBroker")<Broker, PrivateNats>() {}

const env = Layer.unwrapScoped(
  Effect.gen(function* () {
    const nats = yield* startPrivateNats
    const controlPlane = makeControlPlaneEnv({ runtime: "host", nats })
    const gateway = Layer.scoped(
      GatewayUrl,
      Gateway.start({ host: "127.0.0.1", port: 0, natsUrl: nats.url }).pipe(Effect.map((g) => g.url))
    )
    return Layer.merge(Layer.provideMerge(gateway, controlPlane), Layer.succeed(Broker, nats))
  })
)

const transcript = (sessionId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* sql<{ seq: number; type: string; payload: { type: string; reason?: string; source?: string } }>`
      SELECT seq::int, type, payload FROM session_events WHERE session_id = ${sessionId} ORDER BY seq`
  })

/** A task-mode task of `script` submitted, once its agent runs the script's command: its session, to cancel. */
const runningCommand = (user: TestUser, projectId: string, script: string) =>
  Effect.gen(function* () {
    const taskId = yield* submitTask(user, projectId, script, "task")
    const running = yield* untilTask(taskId, "runs", (r) => r.status === "in_progress")
    const sessionId = running.sessionId!
    yield* waitUntil(
      "the agent runs its command",
      transcript(sessionId).pipe(Effect.map((rows) => (rows.some((r) => r.type === "tool-call") ? true : undefined))),
      { timeout: "30 seconds" }
    )
    return { taskId, sessionId }
  })

/** A user with a project on a fresh local repository. */
const owner = (name: string) =>
  Effect.gen(function* () {
    const user = yield* makeUser(name)
    return { user, projectId: yield* createProject(user, "p") }
  })

/**
 * A node of `userId`'s that the ledger shows ready, played by the test: it takes its commands from
 * its durable consumer and answers each with `answer` (a report to publish, or nothing).
 */
const refusingNode = (
  userId: string,
  answer: (
    command: Domain.NodeProtocol.NodeCommand,
    subject: string
  ) => ReadonlyArray<{
    readonly envelope: { readonly type: string; readonly id: string }
    readonly entityId?: string
  }>
) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const broker = yield* Broker
    const nodeId = makeId("node")
    yield* sql`
      INSERT INTO nodes (id, provider, status, owner_id, agent_ready_at, last_heartbeat_at)
      VALUES (${nodeId}, 'local', 'running', ${userId}, now(), now())`
    const { user } = yield* partyCredentials(
      { kind: "node", nodeId },
      { natsUrl: broker.url, systemCreds: broker.systemCreds, authority: broker.authority }
    )
    const context = yield* Layer.build(
      natsLayer({
        servers: broker.url,
        creds: user.creds,
        name: `refusing-${nodeId}`,
        inboxPrefix: Subjects.nodeInboxPrefix(nodeId),
        jsApiPrefix: Accounts.nodeJsApiPrefix
      })
    )
    const nats = Context.get(context, Nats)
    yield* Consume.ensureConsumer("SAM_NODE", Consume.nodeConsumer(nodeId))
    const commands: Array<Domain.NodeProtocol.NodeCommand> = []
    const publish = (envelope: { readonly type: string; readonly id: string }, entityId?: string) =>
      Publish.publish(Subjects.agentReport(nodeId, envelope.type, entityId), envelope as never).pipe(
        Effect.provideService(Nats, nats)
      )
    yield* Consume.run(
      Consume.consume<typeof N.nodeCommands.defs, Domain.NodeProtocol.NodeCommand>(
        Topology.Streams.SAM_NODE.name,
        Subjects.nodeConsumerName(nodeId),
        N.nodeCommands
      ),
      (delivery) =>
        Effect.gen(function* () {
          commands.push(delivery.envelope)
          for (const report of answer(delivery.envelope, delivery.subject))
            yield* publish(report.envelope, report.entityId)
          return Consume.Outcome.Ack()
        })
    ).pipe(Effect.provideService(Nats, nats), Effect.forkScoped)
    return { nodeId, commands, publish }
  })

const refusal = (command: Domain.NodeProtocol.NodeCommand, subject: string, message: string) =>
  N.CommandRejected.make({ messageId: command.id, commandType: command.type, subject, code: "invalid", message })

layer(env, { excludeTestServices: true, timeout: 180_000 })("rejections come home, sessions end their tasks", (it) => {
  it.effect("stopping a conversation's session completes its task, with the reason recorded", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const { user, projectId } = yield* owner("Stopper")
      const taskId = yield* submitTask(user, projectId, "say hello", "conversation")
      const waiting = yield* untilTask(taskId, "awaits a follow-up", (r) => r.executionStep === "awaiting_followup")
      const stopped = yield* http("POST", `/api/v1/sessions/${waiting.sessionId}/stop`, { token: user.token })
      expect(stopped.status).toBe(200)
      const done = yield* untilTask(taskId, "ends", (r) => r.status !== "in_progress", "15 seconds")
      expect(done).toMatchObject({ status: "completed", errorReason: null })
      const [last] = yield* sql<{ fromStatus: string; toStatus: string; reason: string }>`
        SELECT from_status, to_status, reason FROM task_status_events WHERE task_id = ${taskId} ORDER BY id DESC LIMIT 1`
      expect(last).toMatchObject({ fromStatus: "in_progress", toStatus: "completed" })
      expect(last?.reason).toMatch(/conversation ended: its session was stopped \(stopped by user_/)
    })
  )

  it.effect("cancel with nothing in flight answers idle and sends the node nothing", () =>
    Effect.gen(function* () {
      const { user, projectId } = yield* owner("Idle")
      const taskId = yield* submitTask(user, projectId, "say hello", "conversation")
      const waiting = yield* untilTask(taskId, "awaits a follow-up", (r) => r.executionStep === "awaiting_followup")
      const cancelled = yield* http("POST", `/api/v1/sessions/${waiting.sessionId}/cancel`, { token: user.token })
      expect(cancelled.body).toEqual({ sessionId: waiting.sessionId, status: "idle", accepted: false })
      // The session and its task are as they were: the follow-up still works.
      const prompted = yield* http("POST", `/api/v1/sessions/${waiting.sessionId}/prompt`, {
        token: user.token,
        body: { prompt: "say still here" }
      })
      expect(prompted.status).toBe(202)
      yield* waitUntil(
        "the follow-up's answer",
        transcript(waiting.sessionId!).pipe(
          Effect.map((rows) => (JSON.stringify(rows).includes("still here") ? true : undefined))
        ),
        { timeout: "30 seconds" }
      )
    })
  )

  it.effect("cancelling a task-mode turn leaves the task awaiting a follow-up, and the follow-up completes it", () =>
    Effect.gen(function* () {
      const { user, projectId } = yield* owner("Canceller")
      const { taskId, sessionId } = yield* runningCommand(user, projectId, "say starting\nrun sleep 30\nsay too late")
      const cancelled = yield* http("POST", `/api/v1/sessions/${sessionId}/cancel`, { token: user.token })
      expect(cancelled.status).toBe(202)
      expect(cancelled.body).toEqual({ sessionId, status: "cancelling", accepted: true })
      const waiting = yield* untilTask(
        taskId,
        "awaits a follow-up",
        (r) => r.executionStep === "awaiting_followup",
        "20 seconds"
      )
      expect(waiting.status).toBe("in_progress")
      const prompted = yield* http("POST", `/api/v1/sessions/${sessionId}/prompt`, {
        token: user.token,
        body: { prompt: "run echo done > DONE.txt\nsay finished" }
      })
      expect(prompted.status).toBe(202)
      const done = yield* untilTask(taskId, "ends", (r) => r.status === "completed" || r.status === "failed")
      expect(done).toMatchObject({ status: "completed", branch: `sam/${taskId}` })
      const said = (yield* transcript(sessionId)).filter((r) => r.type === "text").map((r) => JSON.stringify(r.payload))
      expect(said.join()).not.toContain("too late")
    })
  )

  it.effect("a task-mode turn its agent finishes while the cancel is on its way completes the task with its work", () =>
    Effect.gen(function* () {
      const { user, projectId } = yield* owner("Crossing")
      // The demo agent reads the cancel and goes on to the end of its turn, within the node's grace (1.5 s here): its
      // answer is `end_turn`, as an agent's is that finished before the cancel reached it.
      const script = "ignore-cancel\nsay starting\nrun echo done > DONE.txt\nsleep 1200\nsay finished on its own"
      const { taskId, sessionId } = yield* runningCommand(user, projectId, script)
      const cancelled = yield* http("POST", `/api/v1/sessions/${sessionId}/cancel`, { token: user.token })
      expect(cancelled.body).toEqual({ sessionId, status: "cancelling", accepted: true })
      // The turn ended as the agent said, with all it said: the task's work is committed and the task completed.
      const done = yield* untilTask(taskId, "ends", (r) => r.status !== "in_progress", "30 seconds")
      expect(done).toMatchObject({ status: "completed", branch: `sam/${taskId}` })
      const rows = yield* transcript(sessionId)
      const said = rows.flatMap((r) => (r.type === "text" ? [(r.payload as { text?: string }).text ?? ""] : []))
      expect(said.join("")).toContain("finished on its own")
      expect(rows.some((r) => r.type === "cancelled")).toBe(false)
      expect(rows.find((r) => r.type === "turn-ended")?.payload).toMatchObject({ stopReason: "end_turn" })
    })
  )

  it.effect("a task-mode turn its agent ends at a limit waits for a follow-up with its work kept, then completes", () =>
    Effect.gen(function* () {
      const { user, projectId } = yield* owner("Limited")
      // as an agent does at its limit of model requests (a profile's max turns): the turn ends short of its work
      const script = "run echo partial > PART.txt\nsay stopping here\nstop max_turn_requests"
      const taskId = yield* submitTask(user, projectId, script, "task")
      const waiting = yield* untilTask(taskId, "awaits a follow-up", (r) => r.executionStep === "awaiting_followup")
      expect(waiting).toMatchObject({ status: "in_progress", branch: null })
      const sessionId = waiting.sessionId!
      expect((yield* transcript(sessionId)).find((r) => r.type === "turn-ended")?.payload).toMatchObject({
        stopReason: "max_turn_requests"
      })
      // and the session says so, not that its turn completed
      const shown = yield* http("GET", `/api/v1/sessions/${sessionId}`, { token: user.token })
      expect(shown.body.snapshot).toMatchObject({ activity: "idle", reason: "max_turn_requests" })
      // the follow-up finds the work where the turn left it, and its end completes the task with it
      const prompted = yield* http("POST", `/api/v1/sessions/${sessionId}/prompt`, {
        token: user.token,
        body: { prompt: "run cat PART.txt\nsay done" }
      })
      expect(prompted.status).toBe(202)
      const done = yield* untilTask(taskId, "ends", (r) => r.status !== "in_progress")
      expect(done).toMatchObject({ status: "completed", branch: `sam/${taskId}` })
      expect(JSON.stringify(yield* transcript(sessionId))).toContain("partial")
    })
  )

  it.scoped(
    "a node refusing workspace.create fails the workspace and the task at once, and the session's transcript says why",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const { user, projectId } = yield* owner("Refused")
        const node = yield* refusingNode(user.userId, (command, subject) =>
          command.type === "workspace.create"
            ? [{ envelope: refusal(command, subject, "no room for this repository (test)") }]
            : []
        )
        const started = Date.now()
        const taskId = yield* submitTask(user, projectId, "say hi", "task")
        const failed = yield* untilTask(taskId, "fails", (r) => r.status === "failed", "20 seconds")
        // Promptly: the step timeout is two minutes.
        expect(Date.now() - started).toBeLessThan(20_000)
        // The session's start comes with the create (ADR 0036); its failure stops it on the node, and nothing else
        // follows the refusal.
        yield* waitUntil(
          "the failed session's stop sent to the node",
          Effect.sync(() => (node.commands.some((c) => c.type === "session.stop") ? true : undefined))
        )
        expect(node.commands.map((c) => c.type).sort()).toEqual(["session.start", "session.stop", "workspace.create"])
        expect(failed).toMatchObject({ errorStep: "workspace_ready" })
        expect(failed.errorReason).toContain("no room for this repository (test)")
        const [workspace] = yield* sql<{ status: string; errorReason: string }>`
          SELECT status, error_reason FROM workspaces WHERE id = ${failed.workspaceId}`
        expect(workspace?.status).toBe("error")
        expect(workspace?.errorReason).toContain("the node refused workspace.create (invalid)")
        const rows = yield* waitUntil(
          "the failed session's transcript",
          transcript(failed.sessionId!).pipe(Effect.map((r) => (r.length > 0 ? r : undefined)))
        )
        expect(rows.at(-1)?.payload).toMatchObject({ type: "failed", source: "control_plane" })
        expect(rows.at(-1)?.payload.reason).toContain("no room for this repository (test)")

        // A rejection naming a message the control plane never sent this node is audited, not routed.
        const forged = N.CommandRejected.make({
          messageId: makeId("msg"),
          commandType: "workspace.create",
          subject: "x",
          code: "invalid",
          message: "forged"
        })
        yield* node.publish(forged)
        const audit = yield* waitUntil(
          "the unknown rejection audited",
          sql<{ reason: string }>`SELECT reason FROM dropped_reports WHERE message_id = ${forged.id}`.pipe(
            Effect.map((r) => r[0])
          )
        )
        expect(audit.reason).toBe("rejected_unknown_command")
      })
  )

  it.scoped("a node refusing session.start fails the session and its task with the node's reason", () =>
    Effect.gen(function* () {
      const { user, projectId } = yield* owner("NoAgent")
      // The session is opened with the workspace's dispatch, so its refusal can reach the task before the
      // workspace's `running` (CI saw it): this node refuses the start and never reports its workspace
      // running, and the failure is still the session's step.
      yield* refusingNode(user.userId, (command, subject) =>
        command.type === "session.start"
          ? [{ envelope: refusal(command, subject, "agent demo is not installed on this node (test)") }]
          : []
      )
      const taskId = yield* submitTask(user, projectId, "say hi", "task")
      const failed = yield* untilTask(taskId, "fails", (r) => r.status === "failed", "20 seconds")
      expect(failed.errorStep).toBe("agent_session")
      expect(failed.errorReason).toContain("agent demo is not installed on this node (test)")
      const sql = yield* SqlClient.SqlClient
      const [session] = yield* sql<{ status: string; errorReason: string }>`
        SELECT status, error_reason FROM sessions WHERE id = ${failed.sessionId}`
      expect(session?.status).toBe("failed")
      expect(session?.errorReason).toContain("the node refused session.start (invalid)")
      const rows = yield* transcript(failed.sessionId!)
      expect(rows.at(-1)?.payload).toMatchObject({ type: "failed", source: "control_plane" })
      expect(rows.at(-1)?.payload.reason).toContain("agent demo is not installed on this node (test)")
    })
  )

  it.scoped("a node refusing a prompt ends that turn as failed, and no other node can refuse it", () =>
    Effect.gen(function* () {
      const { user, projectId } = yield* owner("Busy")
      const node = yield* refusingNode(user.userId, (command, subject) => {
        switch (command.type) {
          case "workspace.create":
            return [
              {
                envelope: N.WorkspaceStatusReport.make({ workspaceId: command.body.workspaceId, status: "running" }),
                entityId: command.body.workspaceId
              }
            ]
          case "session.start": {
            const { sessionId } = command.body
            const activity = (activity: "prompting" | "idle") =>
              N.SessionActivity.make({
                sessionId,
                activity,
                promptEpoch: 1,
                ...(activity === "idle" ? { stopReason: "end_turn" as const } : {}),
                observedAt: new Date().toISOString()
              })
            return [
              { envelope: activity("prompting"), entityId: sessionId },
              { envelope: activity("idle"), entityId: sessionId }
            ]
          }
          case "session.prompt":
            return [
              {
                envelope: N.CommandRejected.make({
                  messageId: command.id,
                  commandType: command.type,
                  subject,
                  code: "busy",
                  message: "a turn is already running (test)"
                })
              }
            ]
          default:
            return []
        }
      })
      const taskId = yield* submitTask(user, projectId, "say hi", "conversation")
      const waiting = yield* untilTask(taskId, "awaits a follow-up", (r) => r.executionStep === "awaiting_followup")
      const sessionId = waiting.sessionId!
      const prompted = yield* http("POST", `/api/v1/sessions/${sessionId}/prompt`, {
        token: user.token,
        body: { prompt: "say again" }
      })
      expect(prompted.body.promptEpoch).toBe(2)
      const rows = yield* waitUntil(
        "the refused turn in the transcript",
        transcript(sessionId).pipe(Effect.map((r) => (r.at(-1)?.type === "turn-failed" ? r : undefined)))
      )
      expect(rows.at(-1)?.payload).toMatchObject({ type: "turn-failed", source: "control_plane" })
      expect(rows.at(-1)?.payload.reason).toContain("the node refused session.prompt (busy): a turn is already running")
      const shown = yield* http("GET", `/api/v1/sessions/${sessionId}`, { token: user.token })
      expect(shown.body).toMatchObject({
        status: "active",
        snapshot: { activity: "idle", reason: "failed", promptEpoch: 2 }
      })
      expect(yield* taskRow(taskId)).toMatchObject({ status: "in_progress", executionStep: "awaiting_followup" })

      // Another node cannot refuse this node's commands: audited, nothing changes.
      const prompt = node.commands.find((c) => c.type === "session.prompt")!
      const other = yield* refusingNode(user.userId, () => [])
      const forged = N.CommandRejected.make({
        messageId: prompt.id,
        commandType: prompt.type,
        subject: "x",
        code: "not_found",
        message: "forged"
      })
      yield* other.publish(forged)
      const sql = yield* SqlClient.SqlClient
      const audit = yield* waitUntil(
        "the forged rejection audited",
        sql<{ reason: string }>`SELECT reason FROM dropped_reports WHERE message_id = ${forged.id}`.pipe(
          Effect.map((r) => r[0])
        )
      )
      expect(audit.reason).toBe("rejected_another_nodes_command")
      expect((yield* http("GET", `/api/v1/sessions/${sessionId}`, { token: user.token })).body.status).toBe("active")
    })
  )
})
