import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Gateway } from "@sam/gateway"
import { Effect, Layer } from "effect"
import { expect } from "vitest"
import { createProject, submitTask, untilTask } from "../integration/gateway/RestKit.js"
import { makeControlPlaneEnv } from "../src/ControlPlaneHarness.js"
import { waitUntil } from "../src/Env.js"
import { GatewayUrl, http, makeUser, type TestUser } from "../src/GatewayHarness.js"
import { startPrivateNats } from "../src/PrivateNats.js"
import { vmAgentPids } from "../src/ProcessTree.js"

/**
 * A lost turn ends truthfully (ADR 0021), against the whole control plane, the gateway and real
 * vm-agents: a vm-agent killed (-9) or frozen (SIGSTOP) in the middle of a turn running `sleep 60`.
 * The harness's local provider restarts a killed vm-agent, whose report ends the turn as lost; a
 * frozen one is never restarted and goes silent, and the healer ends the turn (bound 10 s here).
 */

const env = Layer.unwrapScoped(
  Effect.gen(function* () {
    const nats = yield* startPrivateNats
    const controlPlane = makeControlPlaneEnv({ runtime: "host", nats })
    const gateway = Layer.scoped(
      GatewayUrl,
      Gateway.start({ host: "127.0.0.1", port: 0, natsUrl: nats.url }).pipe(Effect.map((g) => g.url))
    )
    return Layer.provideMerge(gateway, controlPlane)
  })
)

type Payload = {
  type: string
  reason?: string
  status?: string
  toolCallId?: string
  source?: string
  message?: string
  stopReason?: string
  lostToolCalls?: Array<{ toolCallId: string }>
  text?: string
}

const transcript = (sessionId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* sql<{ seq: number; type: string; payload: Payload }>`
      SELECT seq::int, type, payload FROM session_events WHERE session_id = ${sessionId} ORDER BY seq`
  })

/** A user with a project on a fresh local repository. */
const owner = (name: string) =>
  Effect.gen(function* () {
    const user = yield* makeUser(name)
    return { user, projectId: yield* createProject(user, "p") }
  })

/** The vm-agent process of `nodeId`. */
const vmAgentPid = (nodeId: string) => Effect.sync(() => vmAgentPids(`SAM_NODE_ID=${nodeId}`)[0])

/** The transcript has no gap or repeat in `seq`, and its last turn ended as lost with its tool call closed. */
const expectLostInTranscript = (rows: ReadonlyArray<{ seq: number; type: string; payload: Payload }>) => {
  expect(rows.map((r) => r.seq)).toEqual(rows.map((_, i) => i + 1))
  const ended = rows.findLast((r) => r.type === "turn-ended")
  expect(ended?.payload).toMatchObject({
    type: "turn-ended",
    reason: "lost",
    stopReason: "lost",
    source: "control_plane"
  })
  const call = rows.find((r) => r.type === "tool-call")?.payload.toolCallId
  expect(call).toBeDefined()
  expect(ended?.payload.lostToolCalls?.map((c) => c.toolCallId)).toContain(call)
  expect(
    rows.some((r) => r.type === "tool-call-update" && r.payload.toolCallId === call && r.payload.status === "failed")
  ).toBe(true)
  // Nothing of the agent after the lost turn's end, except the control plane's `failed` when the task failed.
  const after = rows.slice(rows.indexOf(ended!) + 1)
  expect(after.every((r) => r.type === "failed" && r.payload.source === "control_plane")).toBe(true)
}

const start = (name: string, mode: "task" | "conversation") =>
  Effect.gen(function* () {
    const { user, projectId } = yield* owner(name)
    const prompt = "say starting\nrun sleep 60\nsay too late"
    const taskId = yield* submitTask(user, projectId, prompt, mode)
    const running = yield* untilTask(taskId, "runs", (r) => r.status === "in_progress")
    const sessionId = running.sessionId!
    const nodeId = running.nodeId!
    yield* waitUntil(
      "the agent runs sleep 60",
      transcript(sessionId).pipe(Effect.map((rows) => (rows.some((r) => r.type === "tool-call") ? true : undefined))),
      { timeout: "30 seconds" }
    )
    const pid = yield* waitUntil("the vm-agent's pid", vmAgentPid(nodeId), { timeout: "5 seconds" })
    return { user, taskId, sessionId, nodeId, pid }
  })

/** The task and session reach a truthful state: awaiting a follow-up (node back) or failed at `running`. */
const untilTruthful = (user: TestUser, taskId: string, sessionId: string) =>
  Effect.gen(function* () {
    const task = yield* untilTask(
      taskId,
      "leaves running",
      (r) => r.status === "failed" || r.executionStep === "awaiting_followup",
      "60 seconds"
    )
    const shown = yield* waitUntil(
      "the session's snapshot shows the turn lost",
      http("GET", `/api/v1/sessions/${sessionId}`, { token: user.token }).pipe(
        Effect.map((r) =>
          r.body.snapshot?.activity !== "prompting" && r.body.snapshot?.activity !== "recovering" ? r.body : undefined
        )
      ),
      { timeout: "10 seconds" }
    )
    return { task, shown }
  })

layer(env, { excludeTestServices: true, timeout: 180_000 })("a lost turn ends truthfully", (it) => {
  it.effect("kill -9 of the vm-agent during a task-mode turn: lost in the transcript, the task moves on", () =>
    Effect.gen(function* () {
      const { user, taskId, sessionId, pid } = yield* start("Killed", "task")
      const killedAt = Date.now()
      process.kill(pid, "SIGKILL")
      const { task, shown } = yield* untilTruthful(user, taskId, sessionId)
      const elapsed = Date.now() - killedAt
      console.log(
        `task-mode turn lost: truthful ${elapsed} ms after kill -9 (task ${task.status}/${task.executionStep})`
      )
      expect(elapsed).toBeLessThan(60_000)
      if (task.status === "failed") {
        // The vm-agent did not come back: the healer ended the turn and nothing can continue it.
        expect(task).toMatchObject({ errorStep: "running" })
        expect(task.errorReason).toContain("the turn in flight was lost")
        expect(shown.status).toBe("failed")
      } else {
        // It came back and said so: the session can go on.
        expect(task).toMatchObject({ status: "in_progress", executionStep: "awaiting_followup" })
        expect(shown).toMatchObject({ status: "active", snapshot: { activity: "idle", reason: "lost" } })
      }
      expectLostInTranscript(yield* transcript(sessionId))
    })
  )

  it.effect("kill -9 of the vm-agent during a conversation turn: lost, and the conversation awaits a follow-up", () =>
    Effect.gen(function* () {
      const { user, taskId, sessionId, pid } = yield* start("Chatty", "conversation")
      const killedAt = Date.now()
      process.kill(pid, "SIGKILL")
      const { task, shown } = yield* untilTruthful(user, taskId, sessionId)
      console.log(`conversation turn lost: truthful ${Date.now() - killedAt} ms after kill -9 (task ${task.status})`)
      if (task.status !== "failed") {
        expect(task).toMatchObject({ status: "in_progress", executionStep: "awaiting_followup" })
        expect(shown).toMatchObject({ status: "active", snapshot: { activity: "idle", reason: "lost" } })
      }
      expectLostInTranscript(yield* transcript(sessionId))
    })
  )

  it.effect(
    "a follow-up after a lost turn runs on the restarted node (the session reloaded) and completes the task",
    () =>
      Effect.gen(function* () {
        const { user, taskId, sessionId, nodeId, pid } = yield* start("Again", "task")
        process.kill(pid, "SIGKILL")
        yield* untilTask(taskId, "awaits a follow-up", (r) => r.executionStep === "awaiting_followup", "30 seconds")
        const restarted = yield* waitUntil("the vm-agent restarted", vmAgentPid(nodeId), { timeout: "30 seconds" })
        expect(restarted).not.toBe(pid)
        const prompted = yield* http("POST", `/api/v1/sessions/${sessionId}/prompt`, {
          token: user.token,
          body: { prompt: "run echo done > DONE.txt\nsay finished again" }
        })
        expect(prompted.status).toBe(202)
        const done = yield* untilTask(taskId, "ends", (r) => r.status === "completed" || r.status === "failed")
        expect(done).toMatchObject({ status: "completed", branch: `sam/${taskId}` })
        const rows = yield* transcript(sessionId)
        expect(rows.map((r) => r.seq)).toEqual(rows.map((_, i) => i + 1))
        const lost = rows.findIndex((r) => r.type === "turn-ended" && r.payload.reason === "lost")
        expect(lost).toBeGreaterThan(0)
        const later = rows.slice(lost + 1)
        const said = later.filter((r) => r.type === "text").map((r) => r.payload.text)
        expect(said.join(""), JSON.stringify(later.map((r) => r.payload))).toContain("finished again")
        expect(later.at(-1)?.payload).toMatchObject({ type: "turn-ended", stopReason: "end_turn" })
        // The lost turn's rest never ran.
        expect(
          rows
            .filter((r) => r.type === "text")
            .map((r) => r.payload.text)
            .join("")
        ).not.toContain("too late")
      })
  )

  it.effect(
    "a frozen vm-agent (no heartbeats, not restarted): the healer ends the turn as lost and fails the task",
    () =>
      Effect.gen(function* () {
        const { user, taskId, sessionId, pid } = yield* start("Frozen", "task")
        const frozenAt = Date.now()
        process.kill(pid, "SIGSTOP")
        const outcome = yield* untilTruthful(user, taskId, sessionId).pipe(
          Effect.ensuring(Effect.try(() => process.kill(pid, "SIGKILL")).pipe(Effect.ignore))
        )
        const elapsed = Date.now() - frozenAt
        console.log(`frozen vm-agent: turn ended as lost ${elapsed} ms after SIGSTOP`)
        expect(elapsed).toBeLessThan(30_000)
        expect(outcome.task).toMatchObject({ status: "failed", errorStep: "running" })
        expect(outcome.task.errorReason).toMatch(/went silent .*the turn in flight was lost/)
        expect(outcome.shown.status).toBe("failed")
        expectLostInTranscript(yield* transcript(sessionId))
      })
  )
})
