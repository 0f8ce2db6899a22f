/**
 * Benchmark: what a streamed line costs the agent that writes it (issue 12). At a streaming pace every line wakes its
 * agent from sleep, and on this machine the agents run beside the rest of the path. The demo agent (`dist/`, over
 * ACP on its stdio, prompted with `stamp` and `sleep 20` a line: 50 lines a second) against the raw baseline, the
 * live floor's writer (`floor/writer.mjs`: one `session/update` line every 20 ms, nothing else), run alternately in
 * the same run, ROUNDS times each, one process at a time with nothing else of SAM running. CPU time is read from
 * each thread's `schedstat` (nanoseconds on a CPU, user and system together; /proc's `stat` counts 10 ms ticks).
 *
 * Then the other end of the pipe: what reading those lines costs the vm-agent's reader, in this process, through
 * `agentStdio` either to the SDK's client (its queue, reader, chain of handlers and union schema: how the vm-agent read
 * every update before) or past it and parsed one kind of update at a time (`onUpdate`, `UpdateSchema.ts`: how it reads
 * them now), alternated the same way.
 *
 * Run: `node --import tsx test/bench/agent-lines.ts [lines]`. Rewrites the "Agent lines" section of
 * docs/benchmarks.md.
 */
import { type ChildProcess, type StdioOptions, spawn } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import { cpus } from "node:os"
import { join } from "node:path"
import type { Readable, Writable } from "node:stream"
import { client } from "@agentclientprotocol/sdk"
import { Effect } from "effect"
import { agentStdio } from "../../vm-agent/src/acp/AgentProcess.js"
import { parseSessionNotification } from "../../vm-agent/src/acp/UpdateSchema.js"
import { compiledAgents, runBench, scratch, writeSection } from "./BenchReport.js"

const LINES = Number(process.argv[2] ?? 300)
const GAP_MS = 20
const ROUNDS = 5
const ROOT = join(import.meta.dirname, "..", "..")

/** CPU time (ms) the threads of `pid` have been on a CPU so far. */
const onCpuMs = (pid: number) => {
  let ns = 0
  for (const task of readdirSync(`/proc/${pid}/task`))
    ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, "utf8").split(" ")[0])
  return ns / 1e6
}

/**
 * Reads `child`'s stdout as JSON lines until `done` says so; counts the stamped `session/update` lines and reads the
 * child's CPU time at the first and the last. Each line is given to `answer` too. The µs of CPU per line between them.
 */
const perLine = (
  child: ChildProcess,
  answer: (message: Record<string, unknown>) => void,
  done: (message: Record<string, unknown>) => boolean
) =>
  new Promise<number>((resolve, reject) => {
    let buffer = ""
    let stamps = 0
    let first = 0
    let last = 0
    child.on("exit", (code) => reject(new Error(`the agent exited (${code}) after ${stamps} lines`)))
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      buffer += chunk
      for (let end = buffer.indexOf("\n"); end >= 0; end = buffer.indexOf("\n")) {
        const message = JSON.parse(buffer.slice(0, end)) as Record<string, unknown>
        buffer = buffer.slice(end + 1)
        if (message.method === "session/update" && JSON.stringify(message.params).includes("stamp ")) {
          stamps++
          last = onCpuMs(child.pid!)
          if (stamps === 1) first = last
        }
        if (done(message)) {
          resolve(((last - first) * 1000) / (stamps - 1))
          return
        }
        answer(message)
      }
    })
  })

/** The floor's writer, started: LINES lines, GAP_MS apart, after 300 ms. */
const spawnWriter = (stdio: StdioOptions) =>
  spawn(process.execPath, [join(ROOT, "test", "bench", "floor", "writer.mjs"), "s", `${GAP_MS}`, `${LINES}`, "300"], {
    stdio
  })

/** The floor's writer alone: its CPU per line. */
const writer = async () => {
  const child = spawnWriter(["ignore", "pipe", "inherit"])
  try {
    return await perLine(
      child,
      () => {},
      (message) => message.cpuMs !== undefined
    )
  } finally {
    child.kill("SIGKILL")
  }
}

/** The demo agent, compiled, as the vm-agent starts it: initialize, session/new, then a prompt of LINES stamps. */
const demoAgent = async (cwd: string) => {
  const child = spawn(process.execPath, [join(ROOT, "dist", "demo-agent.mjs")], {
    cwd,
    env: { PATH: process.env.PATH ?? "", HOME: cwd, SAM_DEMO_AGENT_STATE_DIR: cwd },
    stdio: ["pipe", "pipe", "inherit"]
  })
  const send = (message: unknown) =>
    child.stdin!.write(`${JSON.stringify({ jsonrpc: "2.0", ...(message as object) })}\n`)
  const script = Array.from({ length: LINES }, () => `stamp\nsleep ${GAP_MS}`).join("\n")
  try {
    const measured = perLine(
      child,
      (message) => {
        if (message.id === 1) send({ id: 2, method: "session/new", params: { cwd, mcpServers: [] } })
        if (message.id === 2) {
          const { sessionId } = message.result as { sessionId: string }
          setTimeout(
            () =>
              send({
                id: 3,
                method: "session/prompt",
                params: { sessionId, prompt: [{ type: "text", text: script }] }
              }),
            300
          )
        }
      },
      (message) => message.id === 3
    )
    send({ id: 1, method: "initialize", params: { protocolVersion: 1, clientCapabilities: {} } })
    return await measured
  } finally {
    child.kill("SIGKILL")
  }
}

/**
 * This process's CPU time (µs) per line read from the floor's writer through `agentStdio`, from the first update
 * taken to the last: to the SDK's client, or past it (`direct`) as the vm-agent reads them.
 */
const reader = (direct: boolean) =>
  new Promise<number>((resolve, reject) => {
    const child = spawnWriter(["pipe", "pipe", "pipe"])
    child.on("error", reject)
    let taken = 0
    let first = 0
    const take = (update: unknown) => {
      if (update === undefined) return
      if (++taken === 1) first = onCpuMs(process.pid)
      if (taken < LINES) return
      resolve(((onCpuMs(process.pid) - first) * 1000) / (LINES - 1))
      connection.close()
      child.kill("SIGKILL")
    }
    const { stream } = agentStdio(child as { stdin: Writable; stdout: Readable; stderr: Readable }, {
      onGarbage: () => {},
      ...(direct
        ? {
            onUpdate: (params: unknown) => {
              const parsed = parseSessionNotification(params)
              if (parsed.ok) take(parsed.value.update)
            }
          }
        : {})
    })
    const connection = client({ name: "bench" })
      .onNotification("session/update", ({ params }) => take(params.update))
      .connect(stream)
  })

const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[values.length >> 1]!

const program = Effect.gen(function* () {
  const prefix = compiledAgents()
  const cwd = yield* scratch("sam-agent-lines-")
  const floor: Array<number> = []
  const demo: Array<number> = []
  const viaSdk: Array<number> = []
  const past: Array<number> = []
  for (let round = 0; round < ROUNDS; round++) {
    floor.push(yield* Effect.promise(writer))
    demo.push(yield* Effect.promise(() => demoAgent(cwd)))
  }
  for (let round = 0; round < ROUNDS; round++) {
    viaSdk.push(yield* Effect.promise(() => reader(false)))
    past.push(yield* Effect.promise(() => reader(true)))
  }
  const range = (values: ReadonlyArray<number>) => `${Math.min(...values).toFixed(0)}–${Math.max(...values).toFixed(0)}`
  const section = [
    "## Agent lines",
    "",
    `Measured ${new Date().toISOString().slice(0, 16)} UTC by \`${prefix}node --import tsx test/bench/agent-lines.ts ${LINES}\` on this machine`,
    `(${cpus().length} cores, a virtual machine), Node.js ${process.version}, nothing of SAM running. What a streamed line costs`,
    `the agent that writes it: ${LINES} stamped \`session/update\` lines, one every ${GAP_MS} ms (a session at 50 events/s),`,
    `from the demo agent (compiled, over ACP: \`stamp\` and \`sleep ${GAP_MS}\` a line) and from the live floor's writer`,
    `(\`floor/writer.mjs\`, the raw baseline: a line and a timer, nothing else), alternated, ${ROUNDS} runs each. CPU time on a`,
    "CPU (user and system, every thread, from `schedstat`) per line, between the first line and the last:",
    "",
    "| agent | µs per line, median | runs |",
    "|---|---:|---|",
    `| the live floor's writer (raw baseline) | ${median(floor).toFixed(0)} | ${range(floor)} |`,
    `| the demo agent | ${median(demo).toFixed(0)} | ${range(demo)} |`,
    "",
    `Ratio demo agent/writer: ${(median(demo) / median(floor)).toFixed(2)} (medians).`,
    "",
    "The other end of the pipe: what reading the writer's lines costs the vm-agent's reader (`agentStdio`), in the",
    `bench's process, ${ROUNDS} runs each, alternated. µs of CPU per line:`,
    "",
    "| reader | µs per line, median | runs |",
    "|---|---:|---|",
    `| every update through the SDK's client (its queue, reader, handlers and union schema) | ${median(viaSdk).toFixed(0)} | ${range(viaSdk)} |`,
    `| updates past the SDK, parsed one kind at a time (the vm-agent now) | ${median(past).toFixed(0)} | ${range(past)} |`,
    "",
    `Ratio past/through the SDK: ${(median(past) / median(viaSdk)).toFixed(2)} (medians).`,
    ""
  ].join("\n")
  yield* writeSection("Agent lines", section)
}).pipe(Effect.scoped)

runBench(program)
