import { readFileSync } from "node:fs"
import { layer } from "@effect/vitest"
import { Domain, makeId } from "@sam/bus"
import { Effect } from "effect"
import { expect } from "vitest"
import { natsAdmin, waitUntil } from "../../src/Env.js"
import { isDemoAgent, processes } from "../../src/ProcessTree.js"
import { is, nodeUnderTest, reportWaiter, startVmAgent } from "../../src/VmAgentProcess.js"

const { NodeProtocol } = Domain

/** The demo agents whose parent is `ppid`, each with where it runs now (`/` while it waits warm). */
const demoAgentsOf = (ppid: number) =>
  processes()
    .filter((p) => p.ppid === ppid && !p.zombie && isDemoAgent(p.cmdline))
    .map(({ pid, cwd }) => ({ pid, cwd }))

const gone = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ") ? true : undefined
  } catch {
    return true
  }
}

/**
 * A vm-agent on the host runtime keeps a demo agent booted for the next workspace (ADR 0055): a session started with
 * its workspace, as the control plane dispatches them, gets that process, so its first output does not wait for the
 * agent's start; and the warm agent never outlives its vm-agent.
 */
layer(natsAdmin(), { excludeTestServices: true, timeout: 60_000 })("a vm-agent's warm demo agent", (it) => {
  it.scoped(
    "is the agent of the next session, started with its workspace; the next one waits, and ends with its vm-agent",
    () =>
      Effect.gen(function* () {
        const { nodeId, node, repo, reports, send } = yield* nodeUnderTest
        const agent = startVmAgent(nodeId, node)
        yield* Effect.addFinalizer(() => Effect.sync(() => agent.child.kill("SIGKILL")))
        const { waitFor, texts } = reportWaiter(reports, () => agent.output())
        yield* waitFor("node.ready", is("node.ready"), "30 seconds")
        const vmAgent = agent.child.pid!
        const warm = yield* waitUntil(
          "a warm demo agent",
          Effect.sync(() => demoAgentsOf(vmAgent).find((a) => a.cwd === "/"))
        )

        const workspaceId = makeId("ws")
        const sessionId = makeId("sess")
        yield* send(
          NodeProtocol.WorkspaceCreate.make({
            workspaceId,
            projectId: makeId("proj"),
            repoUrl: repo,
            env: [],
            files: []
          })
        )
        yield* send(
          NodeProtocol.SessionStart.make({
            sessionId,
            workspaceId,
            agent: "demo",
            mode: "conversation",
            prompt: "run pwd\nsay warm hello"
          })
        )
        const started = yield* waitFor(
          "agent started",
          is("session.event-reported", (r) => r.body.sessionId === sessionId && r.body.event.type === "agent-started")
        )
        // the process booted before the workspace existed is the session's agent, now in its checkout
        expect(started.body.event.type === "agent-started" && started.body.event.pid).toBe(warm.pid)
        yield* waitFor(
          "first turn ends",
          is("session.activity-reported", (r) => r.body.sessionId === sessionId && r.body.stopReason === "end_turn")
        )
        const said = yield* texts(sessionId)
        expect(said).toContain("warm hello")
        expect(said).toContain(`/workspaces/${workspaceId}/workspace`)
        expect(demoAgentsOf(vmAgent).find((a) => a.pid === warm.pid)?.cwd).toMatch(/\/workspace$/)

        // the next one boots after the create, and waits apart from every workspace
        const next = yield* waitUntil(
          "the next warm demo agent",
          Effect.sync(() => demoAgentsOf(vmAgent).find((a) => a.cwd === "/" && a.pid !== warm.pid))
        )
        // the vm-agent killed, with no finalizer run: its agents see their stdin end and go, the warm one too
        agent.child.kill("SIGKILL")
        yield* waitUntil(
          "the warm demo agent gone with its vm-agent",
          Effect.sync(() => gone(next.pid))
        )
        yield* waitUntil(
          "the session's agent gone with its vm-agent",
          Effect.sync(() => gone(warm.pid))
        )
      })
  )
})
