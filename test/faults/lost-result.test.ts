import { readdirSync, readFileSync } from "node:fs"
import { layer } from "@effect/vitest"
import { Effect } from "effect"
import { expect } from "vitest"
import { createProject, submitTask, untilTask } from "../integration/gateway/RestKit.js"
import { useSettings } from "../src/ControlPlaneHarness.js"
import { waitUntil } from "../src/Env.js"
import { GatewayEnv, makeUser } from "../src/GatewayHarness.js"
import { vmAgentPids } from "../src/ProcessTree.js"

/**
 * A task-mode run's turn ends; its node then keeps the work (commit, push) and reports the task's result. Here
 * the agent leaves a `pre-commit` hook that holds that commit, and the result never comes: the node is killed
 * meanwhile (its restart reports the result failed), or the commit outlasts the task's wait (the task fails on
 * its own). Before, the task said "running" for ever in both cases. Against the whole control plane, the
 * gateway and real vm-agents (host runtime).
 */

// Each step waits 6 s, then 12 and 24; a turn that ended waits for its result the last of them (24 s: a restarted
// vm-agent has that long to report the result lost, beside the rest of the suite).
useSettings({ SAM_TASK_STEP_TIMEOUT_MS: "6000" })

/** The processes running `sleep <seconds>` (the hook's), by pid. */
const sleeping = (seconds: number) =>
  readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8") === `sleep\0${seconds}\0`
      } catch {
        return false
      }
    })
    .map(Number)

/** A task whose agent changes a file and leaves a hook that holds the node's commit for `seconds`. */
const heldTask = (name: string, seconds: number) =>
  Effect.gen(function* () {
    const user = yield* makeUser(name)
    const projectId = yield* createProject(user, "p")
    const prompt = [
      `run printf '#!/bin/sh\\nexec sleep ${seconds}\\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit`,
      "run echo changed > CHANGED.txt",
      "say done"
    ].join("\n")
    const taskId = yield* submitTask(user, projectId, prompt, "task")
    yield* waitUntil(
      "the node's commit held by the hook",
      Effect.sync(() => (sleeping(seconds).length > 0 ? true : undefined)),
      { timeout: "60 seconds" }
    )
    const task = yield* untilTask(taskId, "delegated to its node", (r) => r.nodeId !== null, "5 seconds")
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const pid of sleeping(seconds)) process.kill(pid, "SIGKILL")
      })
    )
    return { taskId, nodeId: task.nodeId! }
  })

layer(GatewayEnv, { excludeTestServices: true, timeout: 180_000 })("a task whose result never comes", (it) => {
  it.scoped("kill -9 of the vm-agent while it commits the task's work: the restarted node fails the task", () =>
    Effect.gen(function* () {
      const { taskId, nodeId } = yield* heldTask("Committing", 43)
      const [pid] = vmAgentPids(`SAM_NODE_ID=${nodeId}`)
      expect(pid).toBeDefined()
      const killedAt = Date.now()
      process.kill(pid!, "SIGKILL")
      const task = yield* untilTask(taskId, "ends", (r) => r.status !== "in_progress" && r.status !== "delegated")
      console.log(`result lost to kill -9: task ${task.status} ${Date.now() - killedAt} ms after the kill`)
      expect(task.status).toBe("failed")
      expect(task.errorReason).toContain("the node restarted while it kept the task's work")
    })
  )

  it.scoped("a commit that outlasts the task's wait: the task fails at its running step, and says why", () =>
    Effect.gen(function* () {
      const { taskId } = yield* heldTask("Slow", 47)
      const heldAt = Date.now()
      const task = yield* untilTask(taskId, "ends", (r) => r.status !== "in_progress" && r.status !== "delegated")
      console.log(`result never reported: task ${task.status} ${Date.now() - heldAt} ms after the commit began`)
      expect(task).toMatchObject({ status: "failed", errorStep: "running" })
      expect(task.errorReason).toContain("did not report the task's result")
    })
  )
})
