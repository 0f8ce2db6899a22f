import { type AnyMessage, client, type SessionUpdate } from "@agentclientprotocol/sdk"
import { describe, expect, it } from "vitest"

/**
 * The ACP SDK is patched (`patches/@agentclientprotocol__sdk@2.4.0.patch`): its own session-update router no longer
 * parses an update that none of its sessions listens for. The client's `session/update` handler, as the vm-agent
 * registers it (`Incarnation.ts`), must still parse every one: an agent is untrusted.
 */
describe("a session/update from the agent", () => {
  it("reaches the handler only when it is valid ACP; one that is not is refused and the next still comes", async () => {
    const update = (content: unknown): AnyMessage => ({
      jsonrpc: "2.0",
      method: "session/update",
      params: { sessionId: "s1", update: { sessionUpdate: "agent_message_chunk", content } }
    })
    const sent = [
      update("not a content block"),
      update({ type: "text" }),
      { jsonrpc: "2.0", method: "session/update", params: { sessionId: 7, update: {} } },
      update({ type: "text", text: "ok" })
    ] as Array<AnyMessage>
    const received: Array<SessionUpdate> = []
    const answered: Array<AnyMessage> = []
    const connection = client({ name: "test" })
      .onNotification("session/update", ({ params }) => {
        received.push(params.update)
      })
      .connect({
        readable: new ReadableStream({
          start: (c) => {
            for (const m of sent) c.enqueue(m)
          }
        }),
        writable: new WritableStream({ write: (m) => void answered.push(m) })
      })
    const deadline = Date.now() + 5_000
    while (received.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    connection.close()
    expect(received).toEqual([{ sessionUpdate: "agent_message_chunk", content: { type: "text", text: "ok" } }])
    // a notification gets no answer, a refused one neither
    expect(answered).toEqual([])
  })
})
