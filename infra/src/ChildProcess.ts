import { type ChildProcess, spawn } from "node:child_process"
import { createWriteStream } from "node:fs"
import { Deferred, Effect, Either, Exit } from "effect"
import { diesWithParent } from "./Host.js"
import * as Leftovers from "./Leftovers.js"
import { StackError } from "./StackError.js"

export interface ServerProcessOptions {
  readonly step: string
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly logFile: string
  /** a line in the server's output that says it is ready */
  readonly readyWhen: RegExp
  readonly readyTimeoutMs?: number
  /** what to tell the user when the command does not exist */
  readonly missingHint: string
  /** run as this user (Postgres refuses root) */
  readonly user?: { readonly uid: number; readonly gid: number } | undefined
  /** the signal that stops it quickly and cleanly (Postgres: SIGINT, a fast shutdown) */
  readonly stopSignal?: NodeJS.Signals
}

/** How a process ended, as a user reads it: `code 1`, `SIGKILL`. */
export const exitReason = (code: number | null, signal: NodeJS.Signals | null) => signal ?? `code ${code}`

interface Launched {
  readonly child: ChildProcess
  readonly startedAt: number
  /** resolves with how it ended */
  readonly exited: Promise<string>
}

/** Spawn the server and wait for its ready line; a failure or an interruption kills it. */
const launch = (options: ServerProcessOptions) =>
  Effect.gen(function* () {
    const ready = yield* Deferred.make<void, StackError>()
    const log = createWriteStream(options.logFile, { flags: "a" })
    // A log that cannot be written is no reason to bring the stack down.
    log.on("error", () => {})
    let tail = ""
    // it ends with this process, also one killed outright
    const [command, args] = diesWithParent(options.command, options.args, options.stopSignal)
    const child: ChildProcess = spawn(command, [...args], {
      stdio: ["ignore", "pipe", "pipe"],
      ...(options.user ?? {})
    })
    Leftovers.track(child.pid, options.step, options.stopSignal ?? "SIGTERM")
    const onOutput = (chunk: Buffer) => {
      // Output can still arrive after "exit" (a server's own children hold the pipe): keep it while the log is open.
      if (!log.writableEnded) log.write(chunk)
      tail = (tail + chunk.toString("utf8")).slice(-4000)
      if (options.readyWhen.test(tail)) Deferred.unsafeDone(ready, Exit.void)
    }
    child.stdout?.on("data", onOutput)
    child.stderr?.on("data", onOutput)
    // "close" comes once its output pipes are closed too, so nothing it wrote is lost from the log.
    child.on("close", () => log.end())
    child.on("error", (error: NodeJS.ErrnoException) => {
      const message =
        error.code === "ENOENT"
          ? `${options.command} not found. ${options.missingHint}`
          : `${options.command}: ${error.message}`
      Deferred.unsafeDone(ready, Exit.fail(new StackError({ step: options.step, message, cause: error })))
    })
    const exited = new Promise<string>((resolve) =>
      child.on("exit", (code, signal) => {
        resolve(exitReason(code, signal))
        Deferred.unsafeDone(
          ready,
          Exit.fail(
            new StackError({
              step: options.step,
              message: `${options.command} exited (${exitReason(code, signal)}) before it was ready; its last output (see ${options.logFile}):\n${tail
                .trim()
                .split("\n")
                .slice(-8)
                .join("\n")}`
            })
          )
        )
      })
    )
    yield* Deferred.await(ready).pipe(
      Effect.timeoutFail({
        duration: options.readyTimeoutMs ?? 30_000,
        onTimeout: () =>
          new StackError({
            step: options.step,
            message: `${options.command} was not ready in time; see ${options.logFile}`
          })
      }),
      Effect.onError(() => Effect.sync(() => child.kill("SIGKILL")))
    )
    return { child, startedAt: Date.now(), exited } satisfies Launched
  })

/**
 * A long-running server as a scoped child process: its output goes to a log file; acquisition waits
 * for its ready line; release sends SIGTERM and waits for it to exit (SIGKILL after 10 s).
 */
export const serverProcess = (options: ServerProcessOptions) =>
  Effect.acquireRelease(
    Effect.map(launch(options), (launched) => launched.child),
    (child) => stopChild(child, options.stopSignal)
  )

export interface RestartPolicy {
  /** restarts in a row that may fail (or die again soon) before giving up */
  readonly maxAttempts: number
  readonly firstDelayMs: number
  readonly maxDelayMs: number
  /** up this long, it counts as healthy again: the next death starts from the first delay */
  readonly stableMs: number
}

export const defaultRestartPolicy: RestartPolicy = {
  maxAttempts: 5,
  firstDelayMs: 1_000,
  maxDelayMs: 10_000,
  stableMs: 60_000
}

/** 1 s, 2 s, 4 s… up to the policy's cap. */
export const backoff = (policy: RestartPolicy, attempt: number) =>
  Math.min(policy.firstDelayMs * 2 ** Math.max(0, attempt - 1), policy.maxDelayMs)

export interface SupervisedServer {
  readonly pid: () => number | undefined
  /** whether it runs now (not while it is down or being restarted) */
  readonly running: () => boolean
  /** fails once the server died and could not be restarted; never succeeds */
  readonly failed: Effect.Effect<never, StackError>
}

/**
 * A server that is started again (same command: same data and port) when it exits while its scope
 * is open, with backoff and a log line each time. After `maxAttempts` restarts in a row that fail,
 * `failed` fails with a message for the user (`sam up` then stops). Closing the scope stops it at
 * once, also while it is down or being restarted.
 */
export const supervisedServer = (
  options: ServerProcessOptions & { readonly name: string },
  policy = defaultRestartPolicy
) =>
  Effect.gen(function* () {
    let current = yield* launch(options)
    let stopping = false
    const failed = yield* Deferred.make<never, StackError>()
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        stopping = true
        return stopChild(current.child, options.stopSignal)
      })
    )
    const supervise = Effect.gen(function* () {
      let failures = 0
      for (;;) {
        const reason = yield* Effect.promise(() => current.exited)
        if (stopping) return
        if (Date.now() - current.startedAt >= policy.stableMs) failures = 0
        const diedAt = Date.now()
        const died = `pid ${current.child.pid} exited (${reason})`
        let cause = died
        for (;;) {
          failures += 1
          if (failures > policy.maxAttempts) {
            const error = new StackError({
              step: options.step,
              message: `${options.name} died (${died}) and could not be restarted after ${policy.maxAttempts} attempts; the last: ${cause}; see ${options.logFile}`
            })
            yield* Effect.logError(error.message)
            return yield* Deferred.fail(failed, error)
          }
          const delay = backoff(policy, failures)
          yield* Effect.logWarning(
            `${options.name} ${cause}; restarting it in ${delay / 1000} s (attempt ${failures} of ${policy.maxAttempts})`
          )
          yield* Effect.sleep(delay)
          const next = yield* Effect.either(launch(options))
          if (Either.isRight(next)) {
            current = next.right
            yield* Effect.logInfo(
              `${options.name} restarted (pid ${current.child.pid}), ${((Date.now() - diedAt) / 1000).toFixed(1)} s after it died`
            )
            break
          }
          cause = `failed to restart: ${next.left.message.split("\n").slice(0, 3).join(" ")}`
        }
      }
    })
    yield* Effect.forkScoped(supervise)
    return {
      pid: () => current.child.pid,
      running: () => current.child.exitCode === null && current.child.signalCode === null,
      failed: Deferred.await(failed)
    } satisfies SupervisedServer
  })

export const stopChild = (child: ChildProcess, signal: NodeJS.Signals = "SIGTERM") =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000)
    child.once("exit", () => {
      clearTimeout(timer)
      resume(Effect.void)
    })
    child.kill(signal)
  })
