import { type AnyMessage, agent, PROTOCOL_VERSION } from "@agentclientprotocol/sdk"
import { describe, expect, it } from "vitest"

/**
 * The ACP SDK is patched (`patches/@agentclientprotocol__sdk@2.4.0.patch`): a connection writes its messages through
 * one writer of its stream for its whole life, not a writer taken and released per message (what that cost the demo
 * agent per update, issue 12). What it sends must still go out whole and in order, a stream that fails must still
 * close the connection, and a closed connection must give its stream back to whoever owns it.
 */
const initialize: AnyMessage = {
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: { protocolVersion: PROTOCOL_VERSION, clientCapabilities: {} }
}

/** An agent that, asked to initialize, sends `count` updates before it answers. */
const chatty = (count: number) =>
  agent({ name: "chatty" }).onRequest("initialize", async ({ client }) => {
    for (let i = 0; i < count; i++)
      await client.notify("session/update", {
        sessionId: "s1",
        update: { sessionUpdate: "agent_message_chunk", content: { type: "text", text: `chunk ${i}` } }
      })
    return { protocolVersion: PROTOCOL_VERSION, agentCapabilities: {}, authMethods: [] }
  })

const waitFor = async (what: () => boolean) => {
  const deadline = Date.now() + 5_000
  while (!what()) {
    if (Date.now() > deadline) throw new Error("timed out")
    await new Promise((r) => setTimeout(r, 5))
  }
}

describe("an ACP connection's writes", () => {
  it("go out whole and in order, and its stream is free again once it closes", async () => {
    const written: Array<AnyMessage> = []
    const writable = new WritableStream<AnyMessage>({ write: (m) => void written.push(m) })
    const connection = chatty(500).connect({
      readable: new ReadableStream({ start: (c) => c.enqueue(initialize) }),
      writable
    })
    await waitFor(() => written.length === 501)
    const texts = written.slice(0, 500).map((m) => {
      const params = (m as { params: { update: { content: { text: string } } } }).params
      return params.update.content.text
    })
    expect(texts).toEqual(Array.from({ length: 500 }, (_, i) => `chunk ${i}`))
    expect(written[500]).toMatchObject({ id: 1, result: { protocolVersion: PROTOCOL_VERSION } })
    connection.close()
    await connection.closed
    // its owner can close the stream (a stream still locked by a writer refuses that)
    expect(writable.locked).toBe(false)
    await writable.close()
  })

  it("close the connection when the stream fails, and write nothing after", async () => {
    const written: Array<AnyMessage> = []
    const writable = new WritableStream<AnyMessage>({
      write: (m) => {
        if (written.length === 3) throw new Error("pipe broken")
        written.push(m)
      }
    })
    const connection = chatty(50).connect({
      readable: new ReadableStream({ start: (c) => c.enqueue(initialize) }),
      writable
    })
    await connection.closed
    expect(written).toHaveLength(3)
    expect(writable.locked).toBe(false)
  })
})
