import {
  type AgentApp,
  type AgentContext,
  agent,
  PROTOCOL_VERSION,
  RequestError,
  type SessionNotification,
  type SessionUpdate,
  type StopReason
} from "@agentclientprotocol/sdk"
import { chunksOf, parseScript, type Step } from "./Script.js"
import type { SessionStore, StoredSession } from "./SessionStore.js"
import { runShell, sleep } from "./Steps.js"

interface Turn {
  readonly abort: AbortController
  ignoreCancel: boolean
}

interface Live {
  readonly stored: StoredSession
  turn: Turn | undefined
}

/** Exit code of the `crash` step. */
export const CRASH_EXIT_CODE = 3

/**
 * Where its lines go (`LineWriter`): `send` after the messages before it once there is room, `raw` at once.
 * A turn's updates are sent as lines of their own, not through the SDK (`client.notify`): its chain of promises and
 * `WritableStream` per message was half again what a streamed line cost the agent (issue 12). Nothing the SDK sends
 * can be overtaken: a turn's only messages through it are its permission requests, awaited before the turn goes
 * on, and the prompt's response, sent after the turn's last update.
 */
export interface DemoAgentOutput {
  readonly send: (line: string) => void | Promise<void>
  readonly raw: (line: string) => void
}

/**
 * The built-in demo agent: a real ACP agent whose prompt is a script (see `Script.ts`). It needs no API key, which
 * makes it the default agent of `sam up` and the agent the tests drive.
 */
export const makeDemoAgent = (store: SessionStore, output: DemoAgentOutput): AgentApp => {
  const sessions = new Map<string, Live>()
  let nextTool = 0

  const liveOf = (sessionId: string): Live => {
    const live = sessions.get(sessionId)
    if (!live) throw RequestError.sessionNotFound(sessionId)
    return live
  }

  const runTurn = async (client: AgentContext, live: Live, turn: Turn, steps: ReadonlyArray<Step>) => {
    const sessionId = live.stored.sessionId
    /** whether the turn's last update was the agent's text: what it says next is the same message */
    let saying = false
    const update = async (u: SessionUpdate) => {
      saying = u.sessionUpdate === "agent_message_chunk"
      const notification: SessionNotification = { sessionId, update: u }
      await output.send(JSON.stringify({ jsonrpc: "2.0", method: "session/update", params: notification }))
    }
    const cancelled = () => turn.abort.signal.aborted
    // Each `say` is a paragraph of its own: said right after another, it would run on in the same message
    // ("allowDeployed.").
    const say = async (text: string) => {
      const chunks = [...chunksOf(text)]
      if (saying && chunks.length > 0) chunks[0] = `\n\n${chunks[0]}`
      for (const chunk of chunks) {
        if (cancelled()) return
        await update({ sessionUpdate: "agent_message_chunk", content: { type: "text", text: chunk } })
      }
    }
    const earlier = live.stored.prompts.slice(0, -1)

    for (const step of steps) {
      if (cancelled()) return "cancelled"
      switch (step._tag) {
        case "say":
          await say(step.text)
          break
        case "stamp": {
          // One chunk: the reader takes the time from it.
          const text = `stamp ${(performance.timeOrigin + performance.now()).toFixed(3)}`
          await update({ sessionUpdate: "agent_message_chunk", content: { type: "text", text } })
          break
        }
        case "echo":
          await say(`You said: ${step.text}. Hello from the demo agent!`)
          break
        case "think":
          await update({ sessionUpdate: "agent_thought_chunk", content: { type: "text", text: step.text } })
          break
        case "plan":
          await update({
            sessionUpdate: "plan",
            entries: step.entries.map((content) => ({ content, priority: "medium", status: "pending" }))
          })
          break
        case "tool": {
          const toolCallId = `tool_${++nextTool}`
          await update({
            sessionUpdate: "tool_call",
            toolCallId,
            title: step.title,
            kind: "other",
            status: "in_progress"
          })
          await update({ sessionUpdate: "tool_call_update", toolCallId, status: "completed" })
          break
        }
        case "run": {
          const toolCallId = `tool_${++nextTool}`
          await update({
            sessionUpdate: "tool_call",
            toolCallId,
            title: step.command,
            kind: "execute",
            status: "in_progress"
          })
          const result = await runShell(step.command, live.stored.cwd, turn.abort.signal, (text) =>
            update({
              sessionUpdate: "tool_call_update",
              toolCallId,
              content: [{ type: "content", content: { type: "text", text } }]
            })
          )
          if (result === "aborted") return "cancelled"
          await update({
            sessionUpdate: "tool_call_update",
            toolCallId,
            status: result.exitCode === 0 ? "completed" : "failed",
            rawOutput: { exitCode: result.exitCode }
          })
          break
        }
        case "sleep":
          await sleep(step.ms, turn.abort.signal)
          break
        case "ignore-cancel":
          turn.ignoreCancel = true
          break
        case "crash":
          process.exit(CRASH_EXIT_CODE)
          break
        case "garbage":
          output.raw("this is not JSON")
          output.raw("{ broken json")
          output.raw("[1, 2, 3]")
          break
        case "recall":
          await say(
            earlier.length === 0
              ? "No earlier prompts."
              : `Earlier prompts: ${earlier.map((text, i) => `${i + 1}) ${text}`).join(" ")}`
          )
          break
        case "fail":
          // what an agent answers when its provider refuses: JSON-RPC's generic message, the reason in data.message
          throw RequestError.internalError({ message: step.message })
        case "stop":
          return step.reason
        case "ask-permission": {
          const toolCallId = `tool_${++nextTool}`
          saying = false // the request stands between what was said before and the answer's line
          const response = await client.request("session/request_permission", {
            sessionId,
            toolCall: { toolCallId, title: step.title, kind: "other", status: "pending" },
            options: [
              { optionId: "allow", name: "Allow", kind: "allow_once" },
              { optionId: "reject", name: "Reject", kind: "reject_once" }
            ]
          })
          const outcome = response.outcome.outcome === "selected" ? response.outcome.optionId : "cancelled"
          await say(`Permission for ${step.title}: ${outcome}`)
          break
        }
      }
    }
    return cancelled() ? "cancelled" : "end_turn"
  }

  return agent({ name: "sam-demo-agent" })
    .onRequest("initialize", () => ({
      protocolVersion: PROTOCOL_VERSION,
      agentCapabilities: { loadSession: true },
      agentInfo: { name: "sam-demo-agent", version: "0.1.0" },
      authMethods: []
    }))
    .onRequest("session/new", ({ params }) => {
      const stored = store.create(params.cwd)
      sessions.set(stored.sessionId, { stored, turn: undefined })
      return { sessionId: stored.sessionId }
    })
    .onRequest("session/load", async ({ params, client }) => {
      const stored = store.load(params.cwd, params.sessionId)
      if (!stored) throw RequestError.sessionNotFound(params.sessionId)
      sessions.set(stored.sessionId, { stored, turn: undefined })
      // ACP: loading a session replays its conversation to the client.
      for (const text of stored.prompts) {
        await client.notify("session/update", {
          sessionId: stored.sessionId,
          update: { sessionUpdate: "user_message_chunk", content: { type: "text", text } }
        })
      }
      return {}
    })
    .onRequest("session/prompt", async ({ params, client }): Promise<{ stopReason: StopReason }> => {
      const live = liveOf(params.sessionId)
      if (live.turn) throw RequestError.invalidRequest(undefined, "a prompt is already running in this session")
      const text = params.prompt.flatMap((block) => (block.type === "text" ? [block.text] : [])).join("\n")
      live.stored.prompts.push(text)
      store.save(live.stored)
      const turn: Turn = { abort: new AbortController(), ignoreCancel: false }
      live.turn = turn
      try {
        return { stopReason: await runTurn(client, live, turn, parseScript(text)) }
      } finally {
        live.turn = undefined
      }
    })
    .onNotification("session/cancel", ({ params }) => {
      const turn = sessions.get(params.sessionId)?.turn
      if (turn && !turn.ignoreCancel) turn.abort.abort()
    })
}
