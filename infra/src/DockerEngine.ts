import { execFile } from "node:child_process"
import { mkdir, readFile, writeFile } from "node:fs/promises"
import { join, resolve } from "node:path"
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
 * A private Docker engine as a scoped child process: no bridge, no iptables, and its own data root, exec root,
 * pid file and socket under `dir`, so it never meets a system dockerd. Its storage driver is dockerd's own
 * choice, as on any installation: overlay2 where the kernel and the data root allow it (a container is then
 * made in about 60 ms here), else vfs, which copies the whole image for every container (2–3 s here).
 * Acquisition waits until `/_ping` answers; closing the scope stops it, then unmounts what it left mounted
 * under `dir` (a container's overlay when dockerd did not stop in time, a host-network container's netns).
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
  // added before the server: runs after it stopped
  yield* Effect.addFinalizer(() => unmountUnder(dir))
  const timeoutMs = options.readyTimeoutMs ?? 60_000
  yield* serverProcess({
    step: "docker",
    command: "dockerd",
    args: [
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
  const driver = yield* DockerApi.storageDriver(engine).pipe(Effect.orElseSucceed(() => "unknown"))
  onProgress(`dockerd answers on ${socketPath} (storage driver ${driver})`)
  return engine
})

/** Mount points in /proc's `mountinfo` (its fifth field, with spaces and the like escaped as octal). */
const mountPoints = (mountinfo: string) =>
  mountinfo
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((field): field is string => field !== undefined)
    .map((field) =>
      field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)))
    )

/** What is mounted under `dir` now, deepest first. */
export const mountsUnder = async (dir: string) => {
  const mounts = await readFile("/proc/self/mountinfo", "utf8").then(mountPoints, () => [])
  return mounts.filter((point) => point.startsWith(`${resolve(dir)}/`)).sort((a, b) => b.length - a.length)
}

/** Lazily unmount everything mounted under `dir`, deepest first; what fails is left as it is. */
const unmountUnder = (dir: string) =>
  Effect.promise(async () => {
    for (const point of await mountsUnder(dir))
      await new Promise<void>((done) => execFile("umount", ["-l", point], () => done()))
  })
