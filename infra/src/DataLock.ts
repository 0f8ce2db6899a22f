import { mkdir, open, readFile, unlink } from "node:fs/promises"
import { join } from "node:path"
import { Effect } from "effect"
import { StackError } from "./StackError.js"

export const lockFile = (dataDir: string) => join(dataDir, "sam-up.lock")

/** Whether `pid` is a live process that could be a `sam up` (Linux: its command line names the CLI). */
const holderAlive = async (pid: number) => {
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false
  try {
    process.kill(pid, 0)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false
  }
  // A pid reused by another program since the holder died is no holder.
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => undefined)
  return cmdline === undefined || cmdline.includes("cli")
}

const tryCreate = async (file: string) => {
  try {
    const handle = await open(file, "wx", 0o644)
    await handle.writeFile(`${process.pid}\n`)
    await handle.close()
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false
    throw error
  }
}

/**
 * `sam up`'s lock on its data directory, `<dataDir>/sam-up.lock` holding its pid, taken before
 * anything else touches the directory: a second `sam up` on it fails at once naming the holder. A lock
 * left by a process that is gone is taken over. Released (the file removed) when the scope closes.
 */
export const acquire = (dataDir: string) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const file = lockFile(dataDir)
        await mkdir(dataDir, { recursive: true, mode: 0o755 })
        for (let attempt = 0; attempt < 3; attempt++) {
          if (await tryCreate(file)) return { file, holder: undefined }
          const pid = Number((await readFile(file, "utf8").catch(() => "")).trim())
          if (await holderAlive(pid)) return { file, holder: pid }
          // Stale: remove it and race for a new one (`wx` lets one process win).
          await unlink(file).catch(() => undefined)
        }
        return { file, holder: Number.NaN }
      },
      catch: (cause) => new StackError({ step: "lock", message: `cannot lock ${dataDir}: ${String(cause)}`, cause })
    }).pipe(
      Effect.flatMap(({ file, holder }) =>
        holder === undefined
          ? Effect.succeed(file)
          : Effect.fail(
              new StackError({
                step: "lock",
                message: Number.isNaN(holder)
                  ? `cannot take ${file}: another sam up keeps taking it`
                  : `another sam up (pid ${holder}) is running on ${dataDir} (its lock: ${file}); stop it first, or set SAM_DATA_DIR to use another directory`
              })
            )
      )
    ),
    (file) =>
      Effect.promise(async () => {
        const pid = Number((await readFile(file, "utf8").catch(() => "")).trim())
        if (pid === process.pid) await unlink(file).catch(() => undefined)
      })
  )
