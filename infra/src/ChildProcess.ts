import { type ChildProcess, spawn } from "node:child_process"
import { createWriteStream } from "node:fs"
import { Deferred, Effect, Exit } from "effect"
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

/**
 * A long-running server as a scoped child process: its output goes to a log file; acquisition waits
 * for its ready line; release sends SIGTERM and waits for it to exit (SIGKILL after 10 s).
 */
export const serverProcess = (options: ServerProcessOptions) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const ready = yield* Deferred.make<void, StackError>()
      const log = createWriteStream(options.logFile, { flags: "a" })
      let tail = ""
      const child: ChildProcess = spawn(options.command, [...options.args], {
        stdio: ["ignore", "pipe", "pipe"],
        ...(options.user ?? {})
      })
      const onOutput = (chunk: Buffer) => {
        log.write(chunk)
        tail = (tail + chunk.toString("utf8")).slice(-4000)
        if (options.readyWhen.test(tail)) Deferred.unsafeDone(ready, Exit.void)
      }
      child.stdout?.on("data", onOutput)
      child.stderr?.on("data", onOutput)
      child.on("error", (error: NodeJS.ErrnoException) => {
        const message =
          error.code === "ENOENT"
            ? `${options.command} not found. ${options.missingHint}`
            : `${options.command}: ${error.message}`
        Deferred.unsafeDone(ready, Exit.fail(new StackError({ step: options.step, message, cause: error })))
      })
      child.on("exit", (code, signal) => {
        log.end()
        Deferred.unsafeDone(
          ready,
          Exit.fail(
            new StackError({
              step: options.step,
              message: `${options.command} exited (${signal ?? `code ${code}`}) before it was ready; its last output (see ${options.logFile}):\n${tail
                .trim()
                .split("\n")
                .slice(-8)
                .join("\n")}`
            })
          )
        )
      })
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
      return child
    }),
    (child) => stopChild(child, options.stopSignal)
  )

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
