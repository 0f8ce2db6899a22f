import { execFile, execFileSync } from "node:child_process"
import { mkdir, readFile, rm, writeFile } from "node:fs/promises"
import { Session } from "node:inspector/promises"
import { join } from "node:path"
import { promisify } from "node:util"
import type { SqlClient } from "@effect/sql"
import { ControlPlane, NatsAccounts } from "@sam/actors"
import { type Nats, natsLayer } from "@sam/bus"
import { LocalProvider, type LocalStack } from "@sam/infra"
import { Sql } from "@sam/sql"
import { Effect, Layer, Logger, LogLevel } from "effect"
import { startTestStack, tempDir } from "../src/TestStack.js"

const ROOT = join(import.meta.dirname, "..", "..")
const FILE = join(ROOT, "docs", "benchmarks.md")

/**
 * A benchmark that starts vm-agents or demo agents measures what `./sam` runs: the compiled ones in
 * `dist/` (built here when a source changed, as `./sam` does). `SAM_COMPILED=0` runs them from source
 * instead. Returns the command prefix that says which, for the report's "Measured by" line.
 */
export const compiledAgents = () => {
  if (process.env.SAM_COMPILED === "0") return "SAM_COMPILED=0 "
  execFileSync(process.execPath, [join(ROOT, "infra", "build.mjs"), "--if-stale"], { stdio: "inherit" })
  process.env.SAM_COMPILED = "1"
  return ""
}

/**
 * Print a benchmark's section and put it in docs/benchmarks.md: replace the section under the same
 * `## heading`, or append it. The other sections stay as they are.
 */
export const writeSection = (heading: string, section: string) =>
  Effect.promise(async () => {
    process.stdout.write(`${section}\n`)
    const current = await readFile(FILE, "utf8").catch(() => "# Benchmarks\n")
    const start = current.indexOf(`## ${heading}`)
    const end = start < 0 ? -1 : current.indexOf("\n## ", start + 1)
    const updated =
      start < 0
        ? `${current.trimEnd()}\n\n${section}`
        : `${current.slice(0, start)}${section.trimEnd()}\n${end < 0 ? "" : `\n${current.slice(end + 1)}`}`
    await writeFile(FILE, updated)
  })

/**
 * Run a benchmark on a stack of its own (the `sam up` code on free ports in a temp dir), with the
 * control plane's NATS connection and Postgres, logging warnings only. `beforeClose` runs before the
 * stack stops, whatever happened.
 */
export const runOnStack = async <E>(
  main: (stack: LocalStack.Stack) => Effect.Effect<void, E, Nats | SqlClient.SqlClient>,
  beforeClose: () => void = () => {}
) => {
  const running = await startTestStack()
  try {
    const env = Layer.merge(
      natsLayer({ servers: running.stack.natsUrl, creds: running.stack.controlPlaneCreds, name: "bench" }),
      Sql.layer(running.stack.databaseUrl, "bench")
    )
    await Effect.runPromise(
      main(running.stack).pipe(Effect.provide(env), Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)))
    )
  } finally {
    beforeClose()
    await running.close()
  }
}

/**
 * A scratch directory of this run's, deleted when the run ends: a Docker engine's holds the workspace image
 * (about 4 GB), and runs that kept theirs filled the disk.
 */
export const scratch = (prefix: string) =>
  Effect.acquireRelease(
    Effect.promise(() => tempDir(prefix)),
    (dir) =>
      Effect.promise(async () => {
        // A host-network container leaves dockerd's default netns mounted in its exec root.
        await promisify(execFile)("umount", ["-l", join(dir, "exec", "netns", "default")]).catch(() => undefined)
        await rm(dir, { recursive: true, force: true }).catch((e) => console.warn(`could not delete ${dir}: ${e}`))
      })
  )

/**
 * The control plane on a bench's stack as `sam up` runs it, with local nodes (`runtime`, host by default; `nodeEnv`
 * for their vm-agents) under `<dataDir>/bench`: its NATS and Postgres connections, the outside parties' NATS
 * accounts, the actors.
 */
export const controlPlaneOn = (
  stack: LocalStack.Stack,
  options: {
    readonly controlPlane?: Parameters<typeof ControlPlane.layer>[0]
    readonly runtime?: "host" | "docker"
    readonly nodeEnv?: Readonly<Record<string, string>>
  } = {}
) => {
  const connections = Layer.merge(
    natsLayer({ servers: stack.natsUrl, creds: stack.controlPlaneCreds, name: "bench" }),
    Sql.layer(stack.databaseUrl, "bench")
  )
  const accounts = NatsAccounts.layer({
    natsUrl: stack.natsUrl,
    systemCreds: stack.systemCreds,
    authority: stack.authority
  })
  const base = Layer.merge(connections, accounts.pipe(Layer.provide(connections)))
  const provider = LocalProvider.layer({
    dataDir: join(stack.dataDir, "bench"),
    natsUrl: stack.natsUrl,
    runtime: options.runtime ?? "host",
    env: { ...options.nodeEnv }
  })
  return Layer.merge(
    base,
    ControlPlane.layer(options.controlPlane).pipe(Layer.provide(Layer.merge(provider.pipe(Layer.provide(base)), base)))
  )
}

/**
 * `SAM_BENCH_CHILD_PROFILES=<dir>`: a CPU profile of each vm-agent (and any other Node process the stack starts
 * that takes this process's environment) around `effect`, written to `<dir>` (`profile-child.mjs`). Must be
 * called (to make the wrapper) before the stack starts its processes. Without the variable, `effect` alone.
 */
export const childProfiled = () => {
  const dir = process.env.SAM_BENCH_CHILD_PROFILES
  if (dir === undefined || dir === "") return <A, E, R>(effect: Effect.Effect<A, E, R>) => effect
  const preload = join(import.meta.dirname, "profile-child.mjs")
  process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ""} --import ${preload}`.trim()
  const flag = join(dir, ".on")
  return <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.acquireUseRelease(
      Effect.promise(async () => {
        await mkdir(dir, { recursive: true })
        await writeFile(flag, "")
        // each process looks every 100 ms
        await new Promise((done) => setTimeout(done, 200))
      }),
      () => effect,
      () =>
        Effect.promise(async () => {
          await rm(flag, { force: true })
          await new Promise((done) => setTimeout(done, 1_000))
        })
    )
}

/**
 * `SAM_BENCH_CPU_PROFILE=<file>`: a CPU profile of this process (V8's format) around `effect`, the part of a
 * benchmark it names; `SAM_BENCH_HEAP_PROFILE=<file>`: a sampled profile of what it allocates meanwhile,
 * collected objects included (what the garbage collector's share of a profile comes from). Without either
 * variable, `effect` alone.
 */
export const cpuProfiled = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  const cpuFile = process.env.SAM_BENCH_CPU_PROFILE
  const heapFile = process.env.SAM_BENCH_HEAP_PROFILE
  if (cpuFile === undefined && heapFile === undefined) return effect
  const inspector = new Session()
  return Effect.acquireUseRelease(
    Effect.promise(async () => {
      inspector.connect()
      if (cpuFile !== undefined) {
        await inspector.post("Profiler.enable")
        await inspector.post("Profiler.start")
      }
      if (heapFile !== undefined) {
        await inspector.post("HeapProfiler.enable")
        await inspector.post("HeapProfiler.startSampling", {
          samplingInterval: 16_384,
          includeObjectsCollectedByMajorGC: true,
          includeObjectsCollectedByMinorGC: true
        })
      }
    }),
    () => effect,
    () =>
      Effect.promise(async () => {
        if (cpuFile !== undefined) {
          const { profile } = await inspector.post("Profiler.stop")
          await writeFile(cpuFile, JSON.stringify(profile))
        }
        if (heapFile !== undefined) {
          const { profile } = await inspector.post("HeapProfiler.stopSampling")
          await writeFile(heapFile, JSON.stringify(profile))
        }
        inspector.disconnect()
      })
  )
}

/** Run a benchmark to its end: exit 0, or print its failure and exit 1 (what it started is not waited for). */
export const runBench = <E>(program: Effect.Effect<void, E>) =>
  Effect.runPromise(program).then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error)
      process.exit(1)
    }
  )
