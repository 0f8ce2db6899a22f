import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Effect } from "effect"
import { expect } from "vitest"
import { createProject, submitTask, untilTask } from "../integration/gateway/RestKit.js"
import { useSettings } from "../src/ControlPlaneHarness.js"
import { waitUntil } from "../src/Env.js"
import { GatewayEnv, http, makeUser } from "../src/GatewayHarness.js"
import { vmAgentPids } from "../src/ProcessTree.js"

/**
 * A node deleted while its vm-agent cannot answer (frozen here): its workspaces were sent their stop and delete,
 * which it never reports; the revoker cuts it off after its grace and the machine goes. Its workspaces end
 * `deleted` with it. Before, they said `stopping` for ever. Against the whole control plane, the gateway and a
 * real vm-agent (host runtime).
 */

// the revoker waits this long for a node's own reports before it cuts the node off (30 s by default)
useSettings({ SAM_NODE_DRAIN_GRACE_MS: "2000" })

const workspaceStatus = (workspaceId: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql<{ status: string }>`
    SELECT status FROM workspaces WHERE id = ${workspaceId}`
  ).pipe(Effect.map((rows) => rows[0]?.status))

layer(GatewayEnv, { excludeTestServices: true, timeout: 120_000 })("a node that goes without a word", (it) => {
  it.scoped("deleted while its vm-agent is frozen: its workspace ends deleted, not stopping for ever", () =>
    Effect.gen(function* () {
      const user = yield* makeUser("Gone")
      const projectId = yield* createProject(user, "p")
      const taskId = yield* submitTask(user, projectId, "say done", "task")
      const done = yield* untilTask(taskId, "completes", (r) => r.status === "completed")
      const workspaceId = done.workspaceId!
      expect(yield* workspaceStatus(workspaceId)).toBe("running")
      const [pid] = vmAgentPids(`SAM_NODE_ID=${done.nodeId}`)
      expect(pid).toBeDefined()
      process.kill(pid!, "SIGSTOP")
      yield* Effect.addFinalizer(() => Effect.try(() => process.kill(pid!, "SIGKILL")).pipe(Effect.ignore))

      const deletedAt = Date.now()
      const deleted = yield* http("DELETE", `/api/v1/nodes/${done.nodeId}`, { token: user.token })
      expect(deleted.status).toBe(202)
      const ended = yield* waitUntil(
        "the workspace no longer stopping",
        workspaceStatus(workspaceId).pipe(Effect.map((s) => (s !== "running" && s !== "stopping" ? s : undefined))),
        { timeout: "40 seconds", every: "200 millis" }
      )
      console.log(`node deleted while frozen: its workspace ${ended} ${Date.now() - deletedAt} ms after the delete`)
      expect(ended).toBe("deleted")
      const node = yield* http("GET", `/api/v1/nodes/${done.nodeId}`, { token: user.token })
      expect(node.body.status).toBe("deleted")
    })
  )
})
