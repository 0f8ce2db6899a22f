/**
 * Benchmark: what a process waking up costs on this machine (issue 12). Every event of the live path
 * wakes several processes (the agent, the vm-agent, nats-server, the control plane, Postgres); at a few
 * events per second per session each wake-up finds its process asleep. Measured with nothing of SAM
 * running: a Node.js process whose 20 ms timer does nothing, the same at 1 ms, and a Node.js process
 * reading one JSON line every 20 ms from a child's stdout (the vm-agent reading its agent, reduced to
 * the bare read).
 *
 * Run: `node --import tsx test/bench/wakeup.ts`. Rewrites the "Wake-ups" section of docs/benchmarks.md.
 */
import { spawn } from "node:child_process"
import { cpus } from "node:os"
import { Effect } from "effect"
import { runBench, writeSection } from "./BenchReport.js"

const TICKS = 300

/** CPU time (user + system, µs) per tick of an empty `setInterval(every)`, in a process of its own. */
const timerTick = (every: number) =>
  new Promise<number>((resolve, reject) => {
    const code = `let n = 0; const c0 = process.cpuUsage(); const t = setInterval(() => { if (++n >= ${TICKS}) { clearInterval(t); const c = process.cpuUsage(c0); process.stdout.write(String((c.user + c.system) / n)) } }, ${every})`
    const child = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] })
    let out = ""
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString()
    })
    child.on("exit", (status) =>
      status === 0 ? resolve(Number(out)) : reject(new Error(`timer child exited ${status}`))
    )
  })

/** CPU time (µs) this process spends per JSON line read from a child writing one every 20 ms. */
const pipeLine = () =>
  new Promise<number>((resolve) => {
    const line = JSON.stringify({
      jsonrpc: "2.0",
      method: "session/update",
      params: { sessionId: "s", update: { sessionUpdate: "agent_message_chunk", content: { type: "text", text: "x" } } }
    })
    const code = `let i = 0; const t = setInterval(() => { process.stdout.write(${JSON.stringify(`${line}\n`)}); if (++i >= ${TICKS}) clearInterval(t) }, 20)`
    const child = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] })
    let lines = 0
    const c0 = process.cpuUsage()
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      for (const each of chunk.split("\n")) {
        if (each === "") continue
        JSON.parse(each)
        lines++
      }
    })
    child.on("exit", () => {
      const c = process.cpuUsage(c0)
      resolve((c.user + c.system) / Math.max(1, lines))
    })
  })

const program = Effect.gen(function* () {
  const slow = yield* Effect.promise(() => timerTick(20))
  const fast = yield* Effect.promise(() => timerTick(1))
  const read = yield* Effect.promise(pipeLine)
  const section = [
    "## Wake-ups",
    "",
    `Measured ${new Date().toISOString().slice(0, 16)} UTC by \`node --import tsx test/bench/wakeup.ts\` on this machine`,
    `(${cpus().length} cores, a virtual machine), Node.js ${process.version}, nothing of SAM running. CPU time (user + system) per wake-up:`,
    "",
    "| what wakes | µs per wake-up |",
    "|---|---:|",
    `| an empty \`setInterval\` callback every 20 ms (the process sleeps in between) | ${slow.toFixed(0)} |`,
    `| the same every 1 ms | ${fast.toFixed(0)} |`,
    `| a JSON line read from a child's stdout every 20 ms (the reader's CPU) | ${read.toFixed(0)} |`,
    ""
  ].join("\n")
  yield* writeSection("Wake-ups", section)
})

runBench(program)
