import { chmod } from "node:fs/promises"
import { join } from "node:path"
import { Effect } from "effect"
import { StackError } from "./StackError.js"

/**
 * The modes of the data directory's secrets (ADR 0014). Agents run as other users on this machine and must reach
 * their own workspace under `nodes/`, so the data directory is enter-only (0711: no listing); `postgres/` too, as
 * the postgres user runs the cluster under it; everything else of ours is root's alone. Files written later (the
 * CLI token, the owner's password, node credentials, `sam creds` output) are written 0600 by their writers.
 */
const MODES: ReadonlyArray<readonly [string, number]> = [
  ["", 0o711],
  ["nats", 0o700],
  ["postgres", 0o711],
  ["postgres/password", 0o600],
  ["postgres/postgres.log", 0o600],
  ["nodes", 0o711],
  ["cli.token", 0o600],
  ["owner.json", 0o600],
  ["owner-password", 0o600],
  ["ops.creds", 0o600],
  ["user.creds", 0o600]
]

/** Sets those modes on what exists of them; a missing file is skipped. */
export const secure = (dataDir: string) =>
  Effect.tryPromise({
    try: async () => {
      for (const [path, mode] of MODES) {
        await chmod(join(dataDir, path), mode).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== "ENOENT") throw error
        })
      }
    },
    catch: (cause) =>
      new StackError({ step: "data", message: `cannot restrict the modes of ${dataDir}: ${cause}`, cause })
  })
