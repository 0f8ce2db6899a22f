import { Domain, makeId } from "@sam/bus"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { STEP_RETRIES, stepTimeoutMs, TaskKind } from "../src/domain/TaskActor.js"

const { ControlProtocol: C } = Domain

const waitingForNode = () => {
  const taskId = makeId("task")
  const nodeId = makeId("node")
  return {
    taskId,
    nodeId,
    state: {
      task: {
        id: taskId,
        projectId: makeId("proj"),
        createdBy: makeId("user"),
        prompt: "say hi",
        agent: "demo",
        mode: "task",
        status: "queued",
        executionStep: "node_provisioning",
        errorStep: null,
        errorReason: null,
        nodeId,
        workspaceId: makeId("ws"),
        sessionId: null,
        branch: null,
        commitSha: null
      },
      candidate: null,
      transitions: []
    }
  }
}

const handle = (state: unknown, command: ReturnType<typeof C.TaskStepTimeout.make>) =>
  Effect.runPromise(
    TaskKind.handle(state, command, {
      kind: "task",
      id: "x",
      subject: "s",
      streamSequence: 1,
      attempt: 1
    }) as unknown as Effect.Effect<{
      state: { task: { status: string; errorReason: string | null; errorStep: string | null } }
      timers?: Array<{ _tag: string; at?: Date; command?: { body: { attempt: number } } }>
      send?: Array<{ subject: string; envelope: { type: string; body: { retry?: number } } }>
    }>
  )

describe("task step timeouts", () => {
  it("retry with backoff, asking for the node again, before they fail the task", async () => {
    const { taskId, state } = waitingForNode()
    const first = await handle(state, C.TaskStepTimeout.make({ taskId, step: "node_provisioning", attempt: 0 }))
    expect(first.state.task.status).toBe("queued")
    const timer = first.timers?.[0]
    expect(timer?.command?.body.attempt).toBe(1)
    expect((timer?.at?.getTime() ?? 0) - Date.now()).toBeGreaterThan(stepTimeoutMs() * 2 - 1_000)
    expect(first.send?.map((s) => [s.envelope.type, s.envelope.body.retry])).toEqual([["node.provision", 1]])

    const last = await handle(
      state,
      C.TaskStepTimeout.make({ taskId, step: "node_provisioning", attempt: STEP_RETRIES })
    )
    expect(last.state.task).toMatchObject({ status: "failed", errorStep: "node_provisioning" })
    expect(last.state.task.errorReason).toContain(`after ${STEP_RETRIES + 1} attempts`)
    // The failed task tells its workspace, which gives its node slot back once it is stopped or deleted (ADR 0022, 0023).
    expect(last.send?.map((s) => s.envelope.type)).toEqual(["session.fail", "workspace.task-ended"])
  })

  it("for a step the task has left, do nothing", async () => {
    const { taskId, state } = waitingForNode()
    const stale = await handle(state, C.TaskStepTimeout.make({ taskId, step: "workspace_dispatch", attempt: 0 }))
    expect(stale.state).toBe(state)
    expect(stale.timers ?? []).toEqual([])
  })
})

describe("a task whose node's readiness came before it waited for it", () => {
  it("is delegated when its workspace runs, opens its session, and completes on its result", async () => {
    const { taskId, nodeId, state } = waitingForNode()
    const apply = (at: unknown, command: { type: string }) =>
      Effect.runPromise(
        TaskKind.handle(at, command as never, {
          kind: "task",
          id: taskId,
          subject: "s",
          streamSequence: 1,
          attempt: 1
        }) as unknown as Effect.Effect<{
          state: { task: { status: string; executionStep: string; sessionId: string | null } }
          send?: Array<{ envelope: { type: string } }>
        }>
      )
    const workspaceId = (state.task as { workspaceId: string }).workspaceId
    // no task.node-assigned came: the workspace's status is the first the task hears of the node
    const running = await apply(
      state,
      C.TaskWorkspaceStatus.make({ taskId, workspaceId: workspaceId as never, status: "running" })
    )
    expect(running.state.task).toMatchObject({ status: "delegated", executionStep: "agent_session" })
    expect(running.send?.map((s) => s.envelope.type)).toEqual(["session.open"])
    const done = await apply(
      running.state,
      C.TaskResultReported.make({
        nodeId,
        result: { taskId, sessionId: running.state.task.sessionId as never, outcome: "no_changes" }
      })
    )
    expect(done.state.task.status).toBe("completed")
  })
})

describe("a turn that ends before the task heard it was running", () => {
  it("a delegated task whose turn was lost (its node restarted) is in progress, waiting for its user, not delegated for ever", async () => {
    const { taskId, state } = waitingForNode()
    const sessionId = makeId("sess")
    const delegated = {
      ...state,
      task: { ...state.task, status: "delegated", executionStep: "agent_session", sessionId }
    }
    const out = await handle(
      delegated,
      C.TaskSessionStatus.make({ taskId, sessionId, status: "awaiting_followup" }) as never
    )
    expect(out.state.task).toMatchObject({ status: "in_progress", executionStep: "awaiting_followup" })
    expect(out.timers?.map((t) => t._tag)).toEqual(["Cancel"])
  })
})
