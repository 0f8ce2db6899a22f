import { Readable, Writable } from "node:stream"
import { ndJsonStream } from "@agentclientprotocol/sdk"
import { makeDemoAgent } from "./DemoAgent.js"
import { lineWriter } from "./LineWriter.js"
import { SessionStore } from "./SessionStore.js"
import { takeWarmStart } from "./WarmStart.js"

// Booted ahead of its workspace (ADR 0055): where it runs, and its environment, come now.
await takeWarmStart()
// The demo agent speaks ACP as ndjson over stdio: stdout carries protocol messages only, logs go to stderr.
const store = new SessionStore(process.env.SAM_DEMO_AGENT_STATE_DIR || undefined)
// What it says goes as lines, those of one pass of the event loop in one write; what waits is written as it exits.
const out = lineWriter(process.stdout)
process.on("exit", out.flush)
const app = makeDemoAgent(store, out)
// What it reads, the SDK frames (and answers a line that is not JSON on stdout itself).
const { readable } = ndJsonStream(
  Writable.toWeb(process.stdout) as WritableStream<Uint8Array>,
  Readable.toWeb(process.stdin) as ReadableStream<Uint8Array>
)
const connection = app.connect({ readable, writable: out.stream })
connection.closed.then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`demo agent: connection failed: ${String(error)}\n`)
    process.exit(1)
  }
)
