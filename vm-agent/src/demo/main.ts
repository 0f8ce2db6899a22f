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
const app = makeDemoAgent(store, (line) => process.stdout.write(`${line}\n`))
// What it reads, the SDK frames (and answers a line that is not JSON on stdout itself); what it says goes as lines.
const { readable } = ndJsonStream(
  Writable.toWeb(process.stdout) as WritableStream<Uint8Array>,
  Readable.toWeb(process.stdin) as ReadableStream<Uint8Array>
)
const connection = app.connect({ readable, writable: lineWriter(process.stdout) })
connection.closed.then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`demo agent: connection failed: ${String(error)}\n`)
    process.exit(1)
  }
)
