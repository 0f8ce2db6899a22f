import { client, ndJsonStream, PROTOCOL_VERSION } from "@agentclientprotocol/sdk"
import { makeDemoAgent } from "./DemoAgent.js"
import { SessionStore } from "./SessionStore.js"

/** A byte pipe in memory: what one side writes, the other reads. */
const pipe = () => new TransformStream<Uint8Array, Uint8Array>()

/** The rehearsal's updates and lines of its own go nowhere. */
const discard = { send: () => {}, raw: () => {} }

/**
 * A warm agent (ADR 0055) goes once through what its first session will ask, before it is taken: `initialize`,
 * `session/new` and a prompt that only says something, over ndjson to a client in this process, with its sessions in
 * memory. Booted is not yet warm: the first requests compile the protocol's schemas and the agent's code on their
 * way, which took 15–25 ms on a quiet machine and several times that on a busy one, on the path to the first output.
 * Nothing of it leaves the process: no file is written, nothing is printed.
 */
export const rehearse = async () => {
  const toAgent = pipe()
  const toClient = pipe()
  const agentSide = makeDemoAgent(new SessionStore(undefined, new Map()), discard).connect(
    ndJsonStream(toClient.writable, toAgent.readable)
  )
  const clientSide = client({ name: "sam-warm-rehearsal" })
    .onNotification("session/update", () => {})
    .connect(ndJsonStream(toAgent.writable, toClient.readable))
  try {
    await clientSide.agent.request("initialize", { protocolVersion: PROTOCOL_VERSION, clientCapabilities: {} })
    const { sessionId } = await clientSide.agent.request("session/new", { cwd: process.cwd(), mcpServers: [] })
    await clientSide.agent.request("session/prompt", { sessionId, prompt: [{ type: "text", text: "say warm" }] })
  } finally {
    clientSide.close()
    agentSide.close?.()
  }
}
