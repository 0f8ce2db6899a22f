// The live path's floor (test/bench/live-floor.ts): an agent at its least, writing one ACP `session/update` line
// (a message chunk stamped with the time it is written) every `gap` ms, `count` times, after `delay` ms, then exiting;
// with a `gap` of 0, all `count` lines at once, in one write (a burst).
const [session, gap, count, delay] = process.argv.slice(2)
const padding = "x".repeat(160)
let written = 0
/** its CPU time when it began to write: its start is not what an event costs */
let started
const line = () => {
  const text = `stamp ${performance.timeOrigin + performance.now()} ${padding}`
  const update = { sessionUpdate: "agent_message_chunk", content: { type: "text", text } }
  return `${JSON.stringify({ jsonrpc: "2.0", method: "session/update", params: { sessionId: session, update } })}\n`
}
const write = () => {
  started ??= process.cpuUsage()
  if (Number(gap) === 0) {
    let lines = ""
    for (; written < Number(count); written++) lines += line()
    process.stdout.write(lines)
  } else {
    process.stdout.write(line())
    written++
  }
  if (written < Number(count)) setTimeout(write, Number(gap))
  else {
    // its CPU time, for the benchmark's count (a process that has ended is gone from /proc)
    const { user, system } = process.cpuUsage(started)
    process.stdout.write(`${JSON.stringify({ cpuMs: (user + system) / 1000 })}\n`)
  }
}
setTimeout(write, Number(delay))
