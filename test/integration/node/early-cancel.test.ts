import { layer } from "@effect/vitest"
import { Domain, makeId } from "@sam/bus"
import { Effect } from "effect"
import { expect } from "vitest"
import { natsAdmin, waitUntil } from "../../src/Env.js"
import {
  conversationTurn,
  is,
  readyNode,
  runningWorkspace,
  startVmAgent,
  watchPrompting
} from "../../src/VmAgentProcess.js"

const { NodeProtocol } = Domain

/**
 * A follow-up (`say before`, a 30 s sleep, `say after`) and its cancel published back to back: the turn ends
 * cancelled well before the sleep would, the cancel is not refused, and the agent never says `after` (the prompt's
 * own text, which its start shows, is not what it said).
 */
const followUpCancelledAtOnce = (
  node: Pick<Effect.Effect.Success<typeof readyNode>, "reports" | "send" | "waitFor" | "texts"> & {
    readonly sessionId: Domain.NodeProtocol.SessionStartBody["sessionId"]
  }
) =>
  Effect.gen(function* () {
    const { sessionId, reports, send, waitFor, texts } = node
    const cancel = NodeProtocol.SessionCancel.make({ sessionId })
    yield* send(
      NodeProtocol.SessionPrompt.make({
        sessionId,
        prompt: "say before\nsleep 30000\nsay after",
        promptEpoch: 2
      })
    )
    yield* send(cancel)
    const ended = yield* waitFor(
      "the follow-up's turn ends",
      is(
        "session.activity-reported",
        (r) => r.body.sessionId === sessionId && r.body.activity === "idle" && r.body.promptEpoch === 2
      ),
      "20 seconds"
    )
    expect(ended.body.stopReason).toBe("cancelled")
    const all = yield* reports.all()
    expect(all.filter(is("command.rejected", (r) => r.body.messageId === cancel.id))).toEqual([])
    const said = (yield* texts(sessionId)).split("\n").filter((line) => line.startsWith('{"type":"text"'))
    expect(said.join("\n")).toContain("hi")
    expect(said.join("\n")).not.toContain("after")
  })

/**
 * A user cancels a task's first turn before its agent has the prompt: the session's start still waits for its
 * workspace (the control plane sends both at once). Before, the node refused the cancel ("nothing to cancel")
 * and the turn ran anyway, whatever the user had been told.
 */
layer(natsAdmin(), { excludeTestServices: true, timeout: 60_000 })("a cancel before the agent runs", (it) => {
  it.scoped("ends the first turn cancelled, without the agent ever getting the prompt", () =>
    Effect.gen(function* () {
      const { nodeId, repo, reports, send, waitFor, texts } = yield* readyNode

      const prompting = yield* watchPrompting(nodeId)
      const workspaceId = makeId("ws")
      const sessionId = makeId("sess")
      yield* send(
        NodeProtocol.SessionStart.make({ sessionId, workspaceId, agent: "demo", mode: "task", prompt: "say too late" })
      )
      // the start waits for its workspace: the node's heartbeats count its turn as on its way
      yield* prompting.seen(sessionId)
      const cancel = NodeProtocol.SessionCancel.make({ sessionId })
      yield* send(cancel)
      yield* send(
        NodeProtocol.WorkspaceCreate.make({ workspaceId, projectId: makeId("proj"), repoUrl: repo, env: [], files: [] })
      )
      const ended = yield* waitFor(
        "the first turn ends",
        is("session.activity-reported", (r) => r.body.sessionId === sessionId && r.body.activity === "idle")
      )
      expect(ended.body).toMatchObject({ stopReason: "cancelled", promptEpoch: 1 })
      const all = yield* reports.all()
      expect(all.filter(is("command.rejected", (r) => r.body.messageId === cancel.id))).toEqual([])
      expect(yield* texts(sessionId)).not.toContain("too late")
      expect(yield* texts(sessionId)).not.toContain("prompt-started")

      // The session goes on: a follow-up runs on the agent that started meanwhile.
      yield* send(NodeProtocol.SessionPrompt.make({ sessionId, prompt: "say second", promptEpoch: 2 }))
      yield* waitFor(
        "the follow-up's turn ends",
        is("session.activity-reported", (r) => r.body.sessionId === sessionId && r.body.stopReason === "end_turn")
      )
      expect(yield* texts(sessionId)).toContain("second")
    })
  )

  it.scoped("ends a follow-up cancelled whose cancel came with it, while the node still saved its record", () =>
    Effect.gen(function* () {
      const { repo, reports, send, waitFor, texts } = yield* readyNode
      const workspaceId = yield* runningWorkspace(send, waitFor, repo)
      const sessionId = yield* conversationTurn(send, waitFor, workspaceId, "say hi")
      // Both at once, as a user's cancel right after a follow-up: the node runs a session's prompts and its cancels
      // side by side, and the cancel came while the prompt's record was saved (issue 12: it was refused as "no prompt
      // in flight", the control plane had said "cancel sent", and the turn ran to its end).
      yield* followUpCancelledAtOnce({ sessionId, reports, send, waitFor, texts })
    })
  )

  it.scoped("ends a follow-up cancelled whose cancel came while the restarted node started its agent again", () =>
    Effect.gen(function* () {
      const { nodeId, node, repo, reports, send, waitFor, texts, agent } = yield* readyNode
      const workspaceId = yield* runningWorkspace(send, waitFor, repo)
      const sessionId = yield* conversationTurn(send, waitFor, workspaceId, "say hi")
      // The node starts again: the session's agent is gone, and the next prompt starts it again (session/load).
      agent.child.kill("SIGKILL")
      yield* Effect.promise(() => agent.exited)
      const again = startVmAgent(nodeId, node)
      yield* Effect.addFinalizer(() => Effect.sync(() => again.child.kill("SIGKILL")))
      yield* waitUntil(
        "the node ready again",
        reports.all().pipe(Effect.map((all) => all.filter(is("node.ready")).length >= 2 || undefined)),
        { timeout: "30 seconds" }
      )
      yield* followUpCancelledAtOnce({ sessionId, reports, send, waitFor, texts })
      // the session goes on: a follow-up runs on the agent started again, with the conversation before
      yield* send(NodeProtocol.SessionPrompt.make({ sessionId, prompt: "recall", promptEpoch: 3 }))
      yield* waitFor(
        "the next turn ends",
        is(
          "session.activity-reported",
          (r) => r.body.sessionId === sessionId && r.body.stopReason === "end_turn" && r.body.promptEpoch === 3
        )
      )
      // what the agent said, run together: it recalls the first prompt only (it never had the cancelled one)
      const spoken = (yield* texts(sessionId))
        .split("\n")
        .filter((line) => line.startsWith('{"type":"text"'))
        .map((line) => (JSON.parse(line) as { text: string }).text)
        .join("")
      expect(spoken).toContain("Earlier prompts: 1) say hi")
      expect(spoken).not.toContain("2) say before")
    })
  )
})
