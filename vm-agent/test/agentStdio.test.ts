import { PassThrough } from "node:stream"
import { type AnyMessage, client, type SessionUpdate } from "@agentclientprotocol/sdk"
import { zSessionNotification } from "@agentclientprotocol/sdk/sam/zod"
import { describe, expect, it } from "vitest"
import { agentStdio } from "../src/acp/AgentProcess.js"
import { parseSessionNotification } from "../src/acp/UpdateSchema.js"

const chunk = (text: string, sessionId: unknown = "s1") => ({
  sessionId,
  update: { sessionUpdate: "agent_message_chunk", content: { type: "text", text } }
})

/**
 * An agent's `session/update`s are parsed past the SDK (`UpdateSchema.ts`): with the SDK's own schema, one kind of
 * update at a time. It must accept and return exactly what the SDK's schema does.
 */
describe("a session/update's params, parsed by kind", () => {
  const samples: ReadonlyArray<unknown> = [
    chunk("hi"),
    chunk("hi", 7),
    { sessionId: "s1", update: { sessionUpdate: "agent_message_chunk", content: "not a block" } },
    { sessionId: "s1", update: { sessionUpdate: "agent_thought_chunk", content: { type: "text", text: "hm" } } },
    { sessionId: "s1", update: { sessionUpdate: "user_message_chunk", content: { type: "text" } } },
    { sessionId: "s1", update: { sessionUpdate: "tool_call", toolCallId: "t1", title: "ls", kind: "execute" } },
    { sessionId: "s1", update: { sessionUpdate: "tool_call", title: "no id" } },
    {
      sessionId: "s1",
      update: {
        sessionUpdate: "tool_call_update",
        toolCallId: "t1",
        status: "completed",
        content: [{ type: "content", content: { type: "text", text: "out" } }],
        rawOutput: { exitCode: 0 }
      }
    },
    { sessionId: "s1", update: { sessionUpdate: "tool_call_update", toolCallId: "t1", status: "sideways" } },
    {
      sessionId: "s1",
      update: { sessionUpdate: "plan", entries: [{ content: "a", priority: "high", status: "pending" }] }
    },
    { sessionId: "s1", update: { sessionUpdate: "plan", entries: "all of it" } },
    { sessionId: "s1", update: { sessionUpdate: "no_such_kind", text: "x" } },
    { sessionId: "s1", update: { sessionUpdate: 3 } },
    { sessionId: "s1", update: null },
    { sessionId: "s1" },
    { sessionId: "s1", update: chunk("x").update, _meta: { any: "thing" } },
    { sessionId: "s1", update: chunk("x").update, _meta: "not a record" },
    null,
    "a string",
    []
  ]

  it("accepts what the SDK's schema accepts, returns what it returns, and refuses the rest with a reason", () => {
    for (const params of samples) {
      const sdk = zSessionNotification.safeParse(params)
      const ours = parseSessionNotification(params)
      expect(ours.ok, JSON.stringify(params)).toBe(sdk.success)
      if (ours.ok && sdk.success) expect(ours.value).toEqual(sdk.data)
      if (!ours.ok) expect(ours.reason.length).toBeGreaterThan(0)
    }
    // the samples try both sides
    expect(samples.filter((params) => zSessionNotification.safeParse(params).success).length).toBeGreaterThan(5)
  })
})

const line = (message: object) => `${JSON.stringify({ jsonrpc: "2.0", ...message })}\n`
const update = (text: string) => line({ method: "session/update", params: chunk(text) })
const settle = () => new Promise((resolve) => setImmediate(resolve))

/**
 * The updates past the SDK (`agentStdio`'s `onUpdate`) must reach the vm-agent in the order the agent wrote them with
 * every other message, which the SDK still takes.
 */
describe("an agent's stdout, its updates past the SDK", () => {
  const wire = () => {
    const stdout = new PassThrough()
    const seen: Array<string> = []
    const io = { stdin: new PassThrough(), stdout, stderr: new PassThrough() }
    const { stream } = agentStdio(io, {
      onGarbage: (text) => void seen.push(`garbage ${text}`),
      onUpdate: (params) => {
        const parsed = parseSessionNotification(params)
        seen.push(
          parsed.ok ? `direct ${(parsed.value.update as { content: { text: string } }).content.text}` : "refused"
        )
      }
    })
    return { stdout, stream, seen }
  }
  const textOf = (update: SessionUpdate) => (update as { content: { text: string } }).content.text

  it("go straight to it, and a read's lines after another message go to the SDK with it, in order", async () => {
    const { stdout, stream, seen } = wire()
    const connection = client({ name: "test" })
      .onNotification("session/update", ({ params }) => void seen.push(`sdk ${textOf(params.update)}`))
      .onRequest("session/request_permission", ({ params }) => {
        seen.push(`sdk ask ${params.toolCall.toolCallId}`)
        return { outcome: { outcome: "cancelled" } }
      })
      .connect(stream)
    stdout.write(update("a") + update("b"))
    await settle()
    const ask = {
      id: 9,
      method: "session/request_permission",
      params: { sessionId: "s1", toolCall: { toolCallId: "t1" }, options: [] }
    }
    stdout.write([update("c"), line(ask), update("d"), "not json\n", update("e")].join(""))
    await settle()
    stdout.write(update("f"))
    await settle()
    connection.close()
    // (a line that is not JSON is reported as it is read, as it always was: it never enters the SDK)
    expect(seen).toEqual([
      "direct a",
      "direct b",
      "direct c",
      "garbage not json",
      "sdk ask t1",
      "sdk d",
      "sdk e",
      "direct f"
    ])
  })

  it("wait behind what the SDK has not read yet", async () => {
    const { stdout, stream, seen } = wire()
    // no reader yet: the first message waits in the stream, and the updates after it wait behind it
    stdout.write(line({ id: 1, method: "session/request_permission", params: { sessionId: "s1" } }))
    await settle()
    stdout.write(update("a"))
    await settle()
    expect(seen).toEqual([])
    const read: Array<AnyMessage> = []
    const reader = stream.readable.getReader()
    for (let i = 0; i < 2; i++) read.push((await reader.read()).value!)
    expect(read.map((m) => ("id" in m ? "ask" : "update"))).toEqual(["ask", "update"])
    // once it has read everything, the next read of stdout goes past it again
    stdout.write(update("b"))
    await settle()
    expect(seen).toEqual(["direct b"])
  })

  it("are refused, not passed on, when they are not ACP, and the next one still comes", async () => {
    const { stdout, seen } = wire()
    stdout.write(line({ method: "session/update", params: chunk("x", 7) }) + update("ok"))
    await settle()
    expect(seen).toEqual(["refused", "direct ok"])
  })
})
