// Temporary directories the tests make, removed once each test file is done (the suites' setup file
// `perFile.ts`) or when a benchmark's process exits: test repositories and stacks' data directories
// were left in /tmp run after run. `SAM_TEST_KEEP_DIRS=1` keeps them, to read after a failure.
import { rmSync } from "node:fs"

export const keepDirs = () => process.env.SAM_TEST_KEEP_DIRS === "1"

/** made in this process and not removed yet */
const made = new Set<string>()

/** `dir`, to be removed by `removeTempDirs`. */
export const tracked = (dir: string) => {
  made.add(dir)
  return dir
}

export const removeTempDirs = () => {
  if (keepDirs()) return
  for (const dir of made) {
    try {
      rmSync(dir, { recursive: true, force: true })
      made.delete(dir)
    } catch {
      // still in use (a mount): it stays
    }
  }
}
process.once("exit", removeTempDirs)
