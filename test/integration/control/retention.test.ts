import { existsSync } from "node:fs"
import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Effect } from "effect"
import { expect } from "vitest"
import {
  ControlPlaneEnv,
  LocalNodes,
  seedProject,
  submitTask,
  tasksEnded,
  useSettings
} from "../../src/ControlPlaneHarness.js"
import { waitUntil } from "../../src/Env.js"

/**
 * A workspace that ended keeps what it holds on its node for a while, then gives it back (ADR 0052): short times here,
 * the defaults are 10 minutes idle and an hour stopped.
 */
useSettings({ SAM_WORKSPACE_IDLE_MS: "1000", SAM_WORKSPACE_ENDED_TTL_MS: "3000" })

layer(ControlPlaneEnv, { excludeTestServices: true, timeout: 120_000 })("an ended workspace's retention", (it) => {
  it.effect(
    "a completed task's workspace stops when idle, and is deleted once it stayed stopped: its files, record and uid go, its sleeping session ends",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const { dir: nodesDir } = yield* LocalNodes
        const { projectId, userId } = yield* seedProject()
        const taskId = yield* submitTask(projectId, userId, "say hello")
        const [task] = yield* tasksEnded([taskId], "60 seconds")
        expect(task!.status).toBe("completed")
        const [placed] = yield* sql<{ nodeId: string }>`SELECT node_id FROM tasks WHERE id = ${taskId}`
        const workspaceDir = join(nodesDir, placed!.nodeId, "data", "workspaces", task!.workspaceId)
        const record = join(nodesDir, placed!.nodeId, "data", "workspaces", ".records", `${task!.workspaceId}.json`)
        const stoppedAt = yield* waitUntil(
          "the idle workspace stopped, its session asleep",
          Effect.map(
            sql<{ status: string; session: string }>`
              SELECT w.status, s.status AS session FROM workspaces w JOIN sessions s ON s.workspace_id = w.id
              WHERE w.id = ${task!.workspaceId}`,
            ([row]) => (row?.status === "stopped" && row.session === "sleeping" ? Date.now() : undefined)
          ),
          { timeout: "30 seconds", every: "100 millis" }
        )
        // stopped, its files stay on the node for now
        expect(existsSync(workspaceDir)).toBe(true)
        expect(existsSync(record)).toBe(true)
        const deletedAt = yield* waitUntil(
          "the stopped workspace deleted",
          Effect.map(sql<{ status: string }>`SELECT status FROM workspaces WHERE id = ${task!.workspaceId}`, ([row]) =>
            row?.status === "deleted" ? Date.now() : undefined
          ),
          { timeout: "30 seconds", every: "100 millis" }
        )
        expect(deletedAt - stoppedAt).toBeGreaterThan(2_000)
        yield* waitUntil(
          "its files and record gone from the node",
          Effect.sync(() => (!existsSync(workspaceDir) && !existsSync(record) ? true : undefined)),
          { timeout: "15 seconds", every: "100 millis" }
        )
        // nothing is left asleep in a workspace that is gone; the task keeps how it ended
        const [session] = yield* sql<{ status: string }>`SELECT status FROM sessions WHERE id = ${task!.sessionId}`
        expect(session?.status).toBe("stopped")
        const [after] = yield* sql<{ status: string }>`SELECT status FROM tasks WHERE id = ${taskId}`
        expect(after?.status).toBe("completed")
      })
  )
})
