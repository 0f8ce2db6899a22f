import { mkdir, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Effect, Schedule } from "effect"
import { serverProcess } from "./ChildProcess.js"
import * as DockerApi from "./DockerApi.js"
import { ensureCommand, isRoot } from "./Host.js"
import { StackError } from "./StackError.js"

export interface EngineOptions {
  /** everything of this engine lives here: data root, exec root, pid file, socket, log */
  readonly dir: string
  readonly onProgress?: (line: string) => void
  readonly readyTimeoutMs?: number
}

export interface Engine extends DockerApi.DockerSocket {
  readonly dir: string
  readonly logFile: string
}

export const printProgress = (line: string) => {
  process.stdout.write(`  … ${line}\n`)
}

/** dockerd must exist (Debian's docker.io, installed here when we are root) and we must be root to run it. */
export const ensureInstalled = (onProgress: (line: string) => void = printProgress) =>
  Effect.gen(function* () {
    yield* ensureCommand("dockerd", "docker.io", onProgress)
    if (!isRoot()) {
      return yield* new StackError({ step: "docker", message: "dockerd needs root here (no rootless setup)" })
    }
  })

/**
 * A private Docker engine as a scoped child process: vfs storage, no bridge, no iptables, and its own
 * data root, exec root, pid file and socket under `dir`, so it never meets a system dockerd.
 * Acquisition waits until `/_ping` answers; closing the scope stops it.
 */
export const start = Effect.fn("DockerEngine.start")(function* (options: EngineOptions) {
  const onProgress = options.onProgress ?? printProgress
  yield* ensureInstalled(onProgress)
  const dir = options.dir
  const socketPath = join(dir, "docker.sock")
  const logFile = join(dir, "dockerd.log")
  const configFile = join(dir, "daemon.json")
  yield* Effect.tryPromise({
    try: async () => {
      await mkdir(join(dir, "data"), { recursive: true })
      await mkdir(join(dir, "exec"), { recursive: true })
      await writeFile(configFile, "{}\n")
    },
    catch: (cause) => new StackError({ step: "docker", message: `cannot prepare ${dir}: ${cause}`, cause })
  })
  const timeoutMs = options.readyTimeoutMs ?? 60_000
  yield* serverProcess({
    step: "docker",
    command: "dockerd",
    args: [
      "--storage-driver=vfs",
      "--bridge=none",
      "--iptables=false",
      "--ip-forward=false",
      "--ip-masq=false",
      `--config-file=${configFile}`,
      `--data-root=${join(dir, "data")}`,
      `--exec-root=${join(dir, "exec")}`,
      `--pidfile=${join(dir, "docker.pid")}`,
      `-H`,
      `unix://${socketPath}`
    ],
    logFile,
    readyWhen: /API listen on/,
    readyTimeoutMs: timeoutMs,
    missingHint: "Install it: apt-get install -y docker.io"
  })
  const engine: Engine = { socketPath, dir, logFile }
  yield* DockerApi.ping(engine).pipe(
    Effect.filterOrFail(
      (ok) => ok,
      () =>
        new StackError({ step: "docker", message: `dockerd does not answer /_ping on ${socketPath}; see ${logFile}` })
    ),
    Effect.retry({ schedule: Schedule.spaced("100 millis"), times: Math.ceil(timeoutMs / 100) })
  )
  onProgress(`dockerd answers on ${socketPath}`)
  return engine
})
