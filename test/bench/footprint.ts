/**
 * Benchmark: what a CLI command costs against a running stack, and what a node's processes hold when
 * idle (issue 12), for the stack run from TypeScript source (`node --import tsx infra/src/cli.ts up`,
 * how SAM ran before) and compiled (`./sam up`: infra/build.mjs bundles). Each variant is a real
 * `sam up` on a data directory and ports of its own: a project, one conversation task run to its
 * follow-up (its vm-agent and demo agent then sit idle), then the CLI timed against it.
 * Raw baselines in the same run: `node -e 0` for a command's start, an idle `node` for memory.
 * Run: `node --import tsx test/bench/footprint.ts`. Rewrites the "Footprint" section of docs/benchmarks.md.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { mkdtemp, rm } from "node:fs/promises"
import { createServer } from "node:net"
import { cpus, tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { Effect } from "effect"
import { isDemoAgent, isVmAgent, processTree } from "../src/ProcessTree.js"
import { makeRepo } from "../src/Repo.js"
import { runBench, writeSection } from "./BenchReport.js"

const ROOT = resolve(import.meta.dirname, "..", "..")
const RUNS = 7

const freePort = () =>
  new Promise<number>((done, fail) => {
    const server = createServer()
    server.once("error", fail)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => done(typeof address === "object" && address !== null ? address.port : 0))
    })
  })

const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

/** Wall time of a command, ms (it must succeed). */
const timed = (command: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv) => {
  const started = performance.now()
  execFileSync(command, args, { cwd: ROOT, env, stdio: "pipe" })
  return performance.now() - started
}

const waitFor = async (what: string, check: () => boolean, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

interface Figures {
  readonly cliMs: number
  /** compiled only, without `./sam`'s launcher: the client bundle with its code cache, and the CLI's ESM chunks */
  readonly clientMs: number
  readonly chunksMs: number
  readonly vmAgentMiB: number
  /** per process: the session's agent and, on the host runtime, the one booted ahead for the next workspace */
  readonly demoAgentMiB: number
  readonly demoAgents: number
}

/** One `sam up`: started, a task run to idle, the node's processes measured, the CLI timed, stopped. */
const variant = async (name: "source" | "compiled"): Promise<Figures> => {
  const dir = await mkdtemp(join(tmpdir(), `sam-footprint-${name}-`))
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SAM_DATA_DIR: join(dir, "data"),
    SAM_NATS_PORT: String(await freePort()),
    SAM_PG_PORT: String(await freePort()),
    SAM_GATEWAY_PORT: String(await freePort())
  }
  // From source: the CLI and, through it, every vm-agent and demo agent run under tsx (SAM_COMPILED unset).
  const cli =
    name === "compiled"
      ? { command: "./sam", args: [] as Array<string> }
      : { command: "node", args: ["--import", "tsx", "infra/src/cli.ts"] }
  const runEnv = name === "compiled" ? env : { ...env, SAM_COMPILED: "" }
  let output = ""
  const up: ChildProcess = spawn(cli.command, [...cli.args, "up"], { cwd: ROOT, env: runEnv, stdio: "pipe" })
  up.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString()
  })
  up.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString()
  })
  try {
    await waitFor("SAM is up", () => output.includes("SAM is up"), 180_000)
    const run = (...args: Array<string>) =>
      execFileSync(cli.command, [...cli.args, ...args], { cwd: ROOT, env: runEnv, stdio: "pipe" }).toString()
    const repo = join(dir, "repo")
    makeRepo(repo)
    const project = /proj_[0-9a-z]+/.exec(run("project", "create", "--repo", repo, "--name", "footprint"))?.[0]
    if (project === undefined) throw new Error("no project id in the CLI's output")
    // A conversation task waits for a follow-up: its vm-agent and demo agent stay up, idle.
    run("task", "create", "--project", project, "--prompt", "say hello", "--mode", "conversation")
    const node = () => processTree(up.pid!)
    await waitFor("a vm-agent and a demo agent", () => node().some((p) => isDemoAgent(p.cmdline)), 30_000)
    // settle: what is measured is the memory held at rest, after the turn's garbage is collected
    await new Promise((r) => setTimeout(r, 5_000))
    const procs = node()
    const mib = (match: (cmdline: string) => boolean) =>
      procs.filter((p) => match(p.cmdline)).reduce((sum, p) => sum + p.rssKiB, 0) / 1024
    const vmAgentMiB = mib(isVmAgent)
    const demoAgents = procs.filter((p) => isDemoAgent(p.cmdline)).length
    const demoAgentMiB = mib(isDemoAgent) / Math.max(1, demoAgents)
    const cliMs = median(
      Array.from({ length: RUNS }, () =>
        timed(cli.command, [...cli.args, "task", "list", "--project", project], runEnv)
      )
    )
    const direct = (...args: Array<string>) =>
      name === "compiled"
        ? median(
            Array.from({ length: RUNS }, () => timed("node", [...args, "task", "list", "--project", project], runEnv))
          )
        : Number.NaN
    const clientMs = direct("infra/run-cached.cjs", "dist/client.cjs")
    const chunksMs = direct("dist/cli.mjs")
    return { cliMs, clientMs, chunksMs, vmAgentMiB, demoAgentMiB, demoAgents }
  } catch (error) {
    process.stderr.write(output)
    throw error
  } finally {
    up.kill("SIGINT")
    await new Promise((r) => up.once("exit", r))
    await rm(dir, { recursive: true, force: true })
  }
}

const program = Effect.gen(function* () {
  // Raw baselines: a Node process that does nothing, started, and held idle.
  const nodeStartMs = median(Array.from({ length: RUNS }, () => timed("node", ["-e", "0"], process.env)))
  const idle = spawn("node", ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" })
  yield* Effect.promise(() => new Promise((r) => setTimeout(r, 1_000)))
  const idleNodeMiB = (processTree(idle.pid!)[0]?.rssKiB ?? 0) / 1024
  idle.kill()
  const source = yield* Effect.promise(() => variant("source"))
  const compiled = yield* Effect.promise(() => variant("compiled"))
  const load = execFileSync("cat", ["/proc/loadavg"]).toString().split(" ").slice(0, 3).join(" ")
  const row = (what: string, before: number, after: number, base: number, unit: string) =>
    `| ${what} | ${before.toFixed(0)} ${unit} | ${after.toFixed(0)} ${unit} | ${base.toFixed(0)} ${unit} | ${(after / base).toFixed(1)}× |`
  const section = [
    "## Footprint",
    "",
    `Measured ${new Date().toISOString().slice(0, 16)} UTC by \`node --import tsx test/bench/footprint.ts\` on this machine`,
    `(${cpus().length} cores, load average ${load}; Node.js ${process.version}). Each column is a real \`sam up\` on a data directory of its own:`,
    "from TypeScript source (`node --import tsx infra/src/cli.ts`, vm-agents and demo agents under tsx, how SAM ran",
    "before) and compiled (`./sam`, esbuild bundles in `dist/`; a client command such as `task list` runs from",
    "`dist/client.cjs` with V8's code cache, infra/run-cached.cjs). A conversation task ran to its follow-up, then the",
    `node's processes were measured at rest; \`sam task list\` is the median of ${RUNS} runs against the running stack`,
    "(with `./sam`'s launcher: dependency and staleness checks). Baselines from the same run: `node -e 0`, an idle `node`.",
    "",
    "| what | from source | compiled | raw baseline | compiled vs baseline |",
    "|---|---:|---:|---:|---:|",
    row("`sam task list` against a running stack", source.cliMs, compiled.cliMs, nodeStartMs, "ms"),
    ...(
      [
        [
          "the client bundle with its code cache, without the launcher (`node infra/run-cached.cjs dist/client.cjs`)",
          compiled.clientMs
        ],
        ["the CLI's ESM chunks, no code cache, without the launcher (`node dist/cli.mjs`)", compiled.chunksMs]
      ] as const
    ).map(
      ([what, ms]) =>
        `| ${what} | | ${ms.toFixed(0)} ms | ${nodeStartMs.toFixed(0)} ms | ${(ms / nodeStartMs).toFixed(1)}× |`
    ),
    row("vm-agent resident memory at idle", source.vmAgentMiB, compiled.vmAgentMiB, idleNodeMiB, "MiB"),
    row(
      `demo agent resident memory at idle, per process (${source.demoAgents} from source, ${compiled.demoAgents} compiled, counting one booted ahead for the next workspace where there is one, ADR 0055)`,
      source.demoAgentMiB,
      compiled.demoAgentMiB,
      idleNodeMiB,
      "MiB"
    ),
    ""
  ].join("\n")
  yield* writeSection("Footprint", section)
})

runBench(program)
