/**
 * Benchmark: what a process waking up costs on this machine (issue 12). Every event of the live path
 * wakes several processes (the agent, the vm-agent, nats-server, the control plane, Postgres); at a few
 * events per second per session each wake-up finds its process asleep. Measured with nothing of SAM
 * running: a Node.js process whose 20 ms timer does nothing, the same at 1 ms, and a Node.js process
 * reading one JSON line every 20 ms from a child's stdout (the vm-agent reading its agent, reduced to
 * the bare read), a loopback TCP round trip to a child that echoes (a statement to Postgres, a request
 * over NATS, reduced to the bare round trip) back to back and 20 ms apart, and a bare system call.
 *
 * Run: `node --import tsx test/bench/wakeup.ts`. Rewrites the "Wake-ups" section of docs/benchmarks.md.
 */
import { spawn } from "node:child_process"
import { closeSync, fstatSync, openSync } from "node:fs"
import { connect } from "node:net"
import { cpus } from "node:os"
import { Effect } from "effect"
import { runBench, writeSection } from "./BenchReport.js"
import { processCpuMs } from "./ProcessCpu.js"

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

/** CPU time (user + system, µs) this process has used. */
const ownCpu = () => {
  const usage = process.cpuUsage()
  return usage.user + usage.system
}
/** Round trips timed back to back. */
const BACK_TO_BACK = 5_000

/**
 * CPU time (µs) per loopback TCP round trip of one byte, in this process and in a child that echoes it, and the wall
 * time of a round trip: `count` round trips, each sent `gap` ms after the answer to the one before (0: at once).
 */
const tcpRoundTrips = (gap: number, count: number) =>
  new Promise<{ client: number; server: number; wall: number }>((resolve, reject) => {
    const code = `const s = require("node:net").createServer((c) => { c.setNoDelay(true); c.on("data", (d) => c.write(d)) }); s.listen(0, "127.0.0.1", () => process.stdout.write(String(s.address().port) + "\\n"))`
    const child = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] })
    child.on("error", reject)
    child.stdout.once("data", (chunk: Buffer) => {
      const socket = connect(Number(chunk.toString().trim()), "127.0.0.1")
      socket.setNoDelay(true)
      const warm = 50
      let answered = 0
      let c0 = 0
      let s0 = 0
      let t0 = 0
      const send = () => socket.write("x")
      socket.on("data", () => {
        answered++
        if (answered === warm) {
          c0 = ownCpu()
          s0 = processCpuMs(child.pid!) * 1000
          t0 = performance.now()
        }
        if (answered < warm + count) return gap === 0 ? send() : void setTimeout(send, gap)
        const wall = ((performance.now() - t0) * 1000) / count - gap * 1000
        resolve({ client: (ownCpu() - c0) / count, server: (processCpuMs(child.pid!) * 1000 - s0) / count, wall })
        socket.destroy()
        child.kill()
      })
      socket.on("connect", send)
      socket.on("error", reject)
    })
  })

/** CPU time (µs) per `fstat` of an open file, called back to back: a bare system call and Node's binding. */
const syscall = () => {
  const fd = openSync("/dev/null", "r")
  for (let i = 0; i < 20_000; i++) fstatSync(fd)
  const n = 200_000
  const c0 = process.cpuUsage()
  for (let i = 0; i < n; i++) fstatSync(fd)
  const c = process.cpuUsage(c0)
  closeSync(fd)
  return (c.user + c.system) / n
}

const program = Effect.gen(function* () {
  const slow = yield* Effect.promise(() => timerTick(20))
  const fast = yield* Effect.promise(() => timerTick(1))
  const read = yield* Effect.promise(pipeLine)
  const atOnce = yield* Effect.promise(() => tcpRoundTrips(0, BACK_TO_BACK))
  const apart = yield* Effect.promise(() => tcpRoundTrips(20, TICKS))
  const call = syscall()
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
    "",
    "A loopback TCP round trip of one byte to a child process that echoes it (a statement to Postgres, a request over",
    "NATS, reduced to the bare round trip), CPU time per round trip in each process and the round trip's wall time:",
    "",
    "| round trips | sender µs | echo µs | wall µs |",
    "|---|---:|---:|---:|",
    `| back to back (${BACK_TO_BACK}) | ${atOnce.client.toFixed(0)} | ${atOnce.server.toFixed(0)} | ${atOnce.wall.toFixed(0)} |`,
    `| 20 ms apart (${TICKS}; the sender's timer wake-up included) | ${apart.client.toFixed(0)} | ${apart.server.toFixed(0)} | ${apart.wall.toFixed(0)} |`,
    "",
    `A bare system call (\`fstat\` of an open file through Node's binding, back to back): ${call.toFixed(2)} µs of CPU.`,
    ""
  ].join("\n")
  yield* writeSection("Wake-ups", section)
})

runBench(program)
