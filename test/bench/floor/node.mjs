// The live path's floor (test/bench/live-floor.ts): a node at its least. It starts its sessions' writers, reads
// their lines, and publishes each session's lines to JetStream as one report per run (what came while the last
// report's acknowledgement was awaited), as the vm-agent does; it exits once every writer has ended and every
// report is acknowledged. No ACP connection, no records, no spans: only the reading, parsing and publishing.
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { connect, credsAuthenticator, headers } from "@nats-io/transport-node"

const config = JSON.parse(process.argv[2])
const nc = await connect({
  servers: config.url,
  authenticator: credsAuthenticator(readFileSync(config.credsFile)),
  name: `floor-${config.node}`
})
const encoder = new TextEncoder()
// JetStream publishes with their acknowledgements on one subscription (as bus/src/StreamPublisher.ts)
const inbox = `_INBOX.floor.${config.node}`
const waiting = new Map()
let token = 0
nc.subscribe(`${inbox}.*`, {
  callback: (_, msg) => {
    const done = waiting.get(msg.subject.slice(inbox.length + 1))
    waiting.delete(msg.subject.slice(inbox.length + 1))
    done?.()
  }
})
const publish = (subject, data, id) =>
  new Promise((resolve) => {
    const t = String(++token)
    waiting.set(t, resolve)
    const h = headers()
    h.set("Nats-Msg-Id", id)
    nc.publish(subject, data, { reply: `${inbox}.${t}`, headers: h })
  })

let running = 0
let inFlight = 0
let writersCpuMs = 0
const finish = () => {
  if (running === 0 && inFlight === 0)
    nc.drain().then(() => {
      // its CPU time and its writers', for the benchmark's count (a process that has ended is gone from /proc)
      const { user, system } = process.cpuUsage(started)
      process.stdout.write(`${JSON.stringify({ nodeCpuMs: (user + system) / 1000, writersCpuMs })}\n`)
      process.exit(0)
    })
}
/** its CPU time once its writers are started, before they write: its start is not what an event costs */
let started
setTimeout(() => {
  started = process.cpuUsage()
}, config.delay / 2)
for (const session of config.sessions) {
  running++
  const writer = spawn(
    process.execPath,
    [join(import.meta.dirname, "writer.mjs"), session, config.gap, config.count, config.delay],
    {
      stdio: ["ignore", "pipe", "inherit"]
    }
  )
  let partial = ""
  let run = []
  let busy = false
  let sent = 0
  const send = () => {
    if (busy || run.length === 0) return
    busy = true
    inFlight++
    const events = run
    run = []
    const report = { type: "floor.events", sessionId: session, events }
    publish(
      `sam.agent.${config.node}.rpt.floor-events.${session}`,
      encoder.encode(JSON.stringify(report)),
      `${config.run}-${session}-${++sent}`
    ).then(() => {
      busy = false
      inFlight--
      send()
      finish()
    })
  }
  writer.stdout.setEncoding("utf8")
  writer.stdout.on("data", (chunk) => {
    const lines = (partial + chunk).split("\n")
    partial = lines.pop()
    for (const line of lines) {
      const message = JSON.parse(line)
      if (message.cpuMs !== undefined) writersCpuMs += message.cpuMs
      else run.push(message.params.update)
    }
    send()
  })
  writer.on("close", () => {
    running--
    finish()
  })
}
