import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Effect } from "effect"
import { expect } from "vitest"
import { ControlPlaneEnv, seedProject, submitTask, tasksEnded, useSettings } from "../../src/ControlPlaneHarness.js"
import { waitUntil } from "../../src/Env.js"

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
      "a task whose node's slots are held by finished tasks' idle workspaces takes the oldest one's slot at once, which stops: no new node, no wait",
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

          // It ran on the same node; the user still has one node.
          const [task] = yield* sql<{ nodeId: string }>`SELECT node_id FROM tasks WHERE id = ${third}`
          expect(task?.nodeId).toBe(node)
          const nodes = yield* sql<{ id: string }>`SELECT id FROM nodes WHERE owner_id = ${userId}`
          expect(nodes.map((n) => n.id)).toEqual([node])
          // The first task's idle workspace, whose slot the third took, stopped; the second's idles on in its slot.
          yield* waitUntil(
            "the first idle workspace stopped",
            sql<{ status: string }>`SELECT status FROM workspaces WHERE task_id = ${first}`.pipe(
              Effect.map((rows) => (rows[0]?.status === "stopped" ? rows : undefined))
            ),
            { timeout: "20 seconds" }
          )
          const [idle] = yield* sql<{ status: string }>`SELECT status FROM workspaces WHERE task_id = ${second}`
          expect(idle?.status).toBe("running")
          // It never waited for capacity: it took the first idle workspace's slot when it reserved.
          const waits = yield* sql<{ reason: string }>`
          SELECT reason FROM task_status_events WHERE task_id = ${third} AND reason LIKE 'waiting for node capacity%'`
          expect(waits).toEqual([])
          const slots = yield* sql<{ taskId: string }>`
          SELECT task_id FROM node_reservations WHERE node_id = ${node} ORDER BY created_at`
          expect(slots.map((r) => r.taskId)).toEqual([second, third])
        })
    )
  }
)
