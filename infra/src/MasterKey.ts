import { chmod, readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { SecretBox } from "@sam/sql"
import { Effect } from "effect"
import { StackError } from "./StackError.js"

/**
 * The embedded setup's master key for secrets at rest (design §9, ADR 0024): unless SAM_MASTER_KEY or
 * SAM_MASTER_KEY_FILE is set, `<data dir>/master.key` (0600), generated the first time, and SAM_MASTER_KEY_FILE
 * pointed at it for the control plane and the gateway in this process. Losing it loses every stored credential.
 */
export const ensure = (dataDir: string) =>
  Effect.tryPromise({
    try: async () => {
      if (process.env.SAM_MASTER_KEY !== undefined || process.env.SAM_MASTER_KEY_FILE !== undefined) return
      const file = join(dataDir, "master.key")
      const existing = await readFile(file, "utf8").catch(() => undefined)
      if (existing === undefined) await writeFile(file, `${SecretBox.generateKey()}\n`, { mode: 0o600, flag: "wx" })
      await chmod(file, 0o600)
      process.env.SAM_MASTER_KEY_FILE = file
    },
    catch: (cause) => new StackError({ step: "master-key", message: `cannot prepare the master key: ${cause}`, cause })
  })
