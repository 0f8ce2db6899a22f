import { Readable, Writable } from "node:stream"
import { ndJsonStream } from "@agentclientprotocol/sdk"
import { makeDemoAgent } from "./DemoAgent.js"
import { SessionStore } from "./SessionStore.js"
import { takeWarmStart } from "./WarmStart.js"

// Booted ahead of its workspace (ADR 0055): where it runs, and its environment, come now.
await takeWarmStart()
// The demo agent speaks ACP as ndjson over stdio: stdout carries protocol messages only, logs go to stderr.
const store = new SessionStore(process.env.SAM_DEMO_AGENT_STATE_DIR || undefined)
const app = makeDemoAgent(store, (line) => process.stdout.write(`${line}\n`))
const connection = app.connect(
  ndJsonStream(
    Writable.toWeb(process.stdout) as WritableStream<Uint8Array>,
    Readable.toWeb(process.stdin) as ReadableStream<Uint8Array>
  )
)
connection.closed.then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`demo agent: connection failed: ${String(error)}\n`)
    process.exit(1)
  }
)
