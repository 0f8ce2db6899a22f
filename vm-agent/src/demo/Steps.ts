import { spawn } from "node:child_process"

/** Resolves after `ms`, or early when `signal` aborts. */
export const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const done = () => {
      clearTimeout(timer)
      signal.removeEventListener("abort", done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener("abort", done)
  })

/**
 * Runs `command` with /bin/sh in `cwd`, in the agent's own process group (so killing the group kills it), and
 * passes its output on in order. On abort the shell is killed with SIGKILL and `"aborted"` is returned at once;
 * grandchildren it left behind die with the process group when the host kills it.
 */
export const runShell = (
  command: string,
  cwd: string,
  signal: AbortSignal,
  onOutput: (text: string) => Promise<void>
): Promise<{ readonly exitCode: number } | "aborted"> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve("aborted")
    const child = spawn("/bin/sh", ["-c", command], { cwd, stdio: ["ignore", "pipe", "pipe"] })
    let pending = Promise.resolve()
    const forward = (data: Buffer) => {
      if (signal.aborted) return
      const text = data.toString("utf8")
      pending = pending.then(() => (signal.aborted ? undefined : onOutput(text))).catch(() => undefined)
    }
    child.stdout.on("data", forward)
    child.stderr.on("data", forward)
    const onAbort = () => {
      child.kill("SIGKILL")
      resolve("aborted")
    }
    signal.addEventListener("abort", onAbort, { once: true })
    child.on("error", (error) => {
      signal.removeEventListener("abort", onAbort)
      pending.then(() => onOutput(`${error.message}\n`)).finally(() => resolve({ exitCode: 127 }))
    })
    child.on("close", (code, sig) => {
      signal.removeEventListener("abort", onAbort)
      if (signal.aborted) return resolve("aborted")
      pending.finally(() => resolve({ exitCode: code ?? (sig ? 128 : 1) }))
    })
  })
