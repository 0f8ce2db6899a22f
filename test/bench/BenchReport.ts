import { readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Effect } from "effect"

const FILE = join(import.meta.dirname, "..", "..", "docs", "benchmarks.md")

/**
 * Print a benchmark's section and put it in docs/benchmarks.md: replace the section under the same
 * `## heading`, or append it. The other sections stay as they are.
 */
export const writeSection = (heading: string, section: string) =>
  Effect.promise(async () => {
    process.stdout.write(`${section}\n`)
    const current = await readFile(FILE, "utf8").catch(() => "# Benchmarks\n")
    const start = current.indexOf(`## ${heading}`)
    const end = start < 0 ? -1 : current.indexOf("\n## ", start + 1)
    const updated =
      start < 0
        ? `${current.trimEnd()}\n\n${section}`
        : `${current.slice(0, start)}${section}${end < 0 ? "" : current.slice(end + 1)}`
    await writeFile(FILE, updated)
  })
