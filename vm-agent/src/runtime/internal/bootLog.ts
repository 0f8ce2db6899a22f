import { Effect } from "effect"
import type { BootLogEntry, CreateOptions, WorkspaceSpec } from "../WorkspaceRuntime.js"

const MASK = "********"

/**
 * Hides every secret value (and every env value of 4+ characters, which may be a secret its sender
 * forgot to flag) from a line before it leaves the runtime.
 */
export const redactor = (spec: WorkspaceSpec) => {
  const values = spec.env
    .filter((e) => e.secret || e.value.length >= 4)
    .map((e) => e.value)
    .filter((v) => v.length > 0)
    .sort((a, b) => b.length - a.length)
  return (line: string) => values.reduce((acc, value) => acc.split(value).join(MASK), line)
}

export type BootLog = (step: string, status: BootLogEntry["status"], message: string) => Effect.Effect<void>

export const makeBootLog = (spec: WorkspaceSpec, options: CreateOptions | undefined): BootLog => {
  const redact = redactor(spec)
  const onLog = options?.onLog
  return (step, status, message) =>
    onLog
      ? onLog({ workspaceId: spec.workspaceId, step, status, message: redact(message).slice(0, 4096) }).pipe(
          Effect.catchAllCause(() => Effect.void)
        )
      : Effect.void
}

/** Splits a byte stream into lines for `onLine`; call the returned flush at the end. */
export const lineSplitter = (onLine: (line: string) => void) => {
  let partial = ""
  return {
    push: (chunk: Buffer | string) => {
      const lines = (partial + chunk.toString()).split(/\r?\n|\r/)
      partial = lines.pop() ?? ""
      for (const line of lines) if (line.trim()) onLine(line)
    },
    flush: () => {
      if (partial.trim()) onLine(partial)
      partial = ""
    }
  }
}
