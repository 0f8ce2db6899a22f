import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Effect } from "effect"
import { expect } from "vitest"
import { ControlPlaneEnv, seedProject, submitTask, tasksEnded, useSettings } from "../../src/ControlPlaneHarness.js"

// Two slots a node, room for more nodes, and finished tasks' workspaces left idle (ADR 0023's timeout far away):
// only placement decides whether idle work makes a new node.
useSettings({
  SAM_MAX_NODES_PER_USER: "3",
  SAM_NODE_MAX_WORKSPACES: "2",
  SAM_TASK_CAPACITY_RETRY_MS: "300",
  SAM_WORKSPACE_IDLE_MS: "600000"
})

layer(ControlPlaneEnv, { excludeTestServices: true, timeout: 120_000 })(
  "placement on a node full of idle work",
  (it) => {
    it.effect(
      "a task whose node's slots are held by finished tasks' idle workspaces runs there once they are stopped: no new node",
      () =>
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          const { projectId, userId } = yield* seedProject()
          // One after another: each finished task leaves its workspace running, idle, holding its slot.
          const first = yield* submitTask(projectId, userId, "say first")
          yield* tasksEnded([first], "60 seconds")
          const second = yield* submitTask(projectId, userId, "say second")
          yield* tasksEnded([second], "60 seconds")
          const before = yield* sql<{ id: string; nodeId: string; status: string }>`
          SELECT id, node_id, status FROM workspaces WHERE task_id IN (${first}, ${second}) ORDER BY created_at`
          expect(before.map((w) => w.status)).toEqual(["running", "running"])
          const node = before[0]!.nodeId
          expect(before[1]!.nodeId).toBe(node)

          const third = yield* submitTask(projectId, userId, "say third")
          const [ended] = yield* tasksEnded([third], "60 seconds")
          expect(ended?.status).toBe("completed")

          // It ran on the same node; the user still has one node; the idle workspaces were stopped to make room.
          const [task] = yield* sql<{ nodeId: string }>`SELECT node_id FROM tasks WHERE id = ${third}`
          expect(task?.nodeId).toBe(node)
          const nodes = yield* sql<{ id: string }>`SELECT id FROM nodes WHERE owner_id = ${userId}`
          expect(nodes.map((n) => n.id)).toEqual([node])
          const after = yield* sql<{ status: string }>`
          SELECT status FROM workspaces WHERE task_id IN (${first}, ${second}) ORDER BY created_at`
          expect(after.map((w) => w.status)).toEqual(["stopped", "stopped"])
          // The wait said why.
          const reasons = yield* sql<{ reason: string }>`
          SELECT reason FROM task_status_events WHERE task_id = ${third} AND reason LIKE 'waiting for node capacity%'`
          expect(reasons.map((r) => r.reason)).toEqual([
            `waiting for node capacity: node ${node} is full (2 of 2 workspaces); stopping 2 whose task ended`
          ])
        })
    )
  }
)
