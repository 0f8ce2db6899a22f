import { spawn, spawnSync } from "node:child_process"
import { Effect } from "effect"
import { StackError } from "./StackError.js"

export const isRoot = () => process.getuid?.() === 0

export const hasCommand = (command: string) =>
  spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0

let setpriv: boolean | undefined

/**
 * The command and arguments that start `command` so that it gets `signal` when this process ends, however it ends
 * (SIGKILL, a crash): util-linux's `setpriv --pdeathsig` sets the kernel's parent-death signal, then runs it. A
 * server or vm-agent of a `sam up` or of a test stack that was killed outright no longer outlives it. As it was
 * where `setpriv` is missing, or `command` is (whose spawn then fails as before, with its hint).
 */
export const diesWithParent = (
  command: string,
  args: ReadonlyArray<string>,
  signal: NodeJS.Signals = "SIGTERM"
): readonly [string, ReadonlyArray<string>] => {
  setpriv ??= hasCommand("setpriv")
  return setpriv && (command.startsWith("/") || hasCommand(command))
    ? ["setpriv", ["--pdeathsig", signal, "--", command, ...args]]
    : [command, args]
}

/** Run a command to completion; its output goes to `onLine` line by line. */
export const run = (step: string, command: string, args: ReadonlyArray<string>, onLine?: (line: string) => void) =>
  Effect.async<void, StackError>((resume) => {
    const child = spawn(command, [...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
    })
    let tail = ""
    let partial = ""
    const onData = (chunk: Buffer) => {
      const text = chunk.toString("utf8")
      tail = (tail + text).slice(-4000)
      const lines = (partial + text).split("\n")
      partial = lines.pop() ?? ""
      for (const line of lines) onLine?.(line)
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", onData)
    child.on("error", (cause) =>
      resume(Effect.fail(new StackError({ step, message: `${command}: ${cause.message}`, cause })))
    )
    child.on("exit", (code, signal) => {
      if (code === 0) return resume(Effect.void)
      const last = tail.trim().split("\n").slice(-8).join("\n")
      resume(
        Effect.fail(
          new StackError({
            step,
            message: `${command} ${args.join(" ")} failed (${signal ?? `code ${code}`}):\n${last}`
          })
        )
      )
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** Make sure `command` exists, installing the Debian `pkg` with apt-get when we are root. */
export const ensureCommand = Effect.fn("Host.ensureCommand")(function* (
  command: string,
  pkg: string,
  onLine: (line: string) => void = () => {}
) {
  if (hasCommand(command)) return false
  const hint = `apt-get update && apt-get install -y ${pkg}`
  if (!isRoot()) {
    return yield* new StackError({
      step: pkg,
      message: `${command} is missing and this is not root; run: sudo ${hint}`
    })
  }
  onLine(`installing ${pkg} (apt-get install -y ${pkg})`)
  yield* run(pkg, "apt-get", ["install", "-y", "-q", "--no-install-recommends", pkg]).pipe(
    Effect.orElse(() =>
      run(pkg, "apt-get", ["update", "-q"]).pipe(
        Effect.zipRight(run(pkg, "apt-get", ["install", "-y", "-q", "--no-install-recommends", pkg]))
      )
    ),
    Effect.mapError((e) => new StackError({ step: pkg, message: `cannot install ${pkg}; run: ${hint}\n${e.message}` }))
  )
  if (!hasCommand(command)) {
    return yield* new StackError({ step: pkg, message: `${pkg} installed but ${command} is still missing` })
  }
  return true
})
