// The live path's floor (test/bench/live-floor.ts): an agent at its least, writing one ACP `session/update` line
// (a message chunk stamped with the time it is written) every `gap` ms, `count` times, after `delay` ms, then exiting.
const [session, gap, count, delay] = process.argv.slice(2)
const padding = "x".repeat(160)
let written = 0
/** its CPU time when it began to write: its start is not what an event costs */
let started
const write = () => {
  started ??= process.cpuUsage()
  const text = `stamp ${performance.timeOrigin + performance.now()} ${padding}`
  const update = { sessionUpdate: "agent_message_chunk", content: { type: "text", text } }
  process.stdout.write(
    `${JSON.stringify({ jsonrpc: "2.0", method: "session/update", params: { sessionId: session, update } })}\n`
  )
  if (++written < Number(count)) setTimeout(write, Number(gap))
  else {
    // its CPU time, for the benchmark's count (a process that has ended is gone from /proc)
    const { user, system } = process.cpuUsage(started)
    process.stdout.write(`${JSON.stringify({ cpuMs: (user + system) / 1000 })}\n`)
  }
}
setTimeout(write, Number(delay))
