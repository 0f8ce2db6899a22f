// The suites' setup file, run before each test file. A worker runs its files one after another in one process
// (the root vitest.config.ts), so what a file leaves in that process goes here once the file is done (its own
// afterAll hooks, which stop its stacks, run first): the temporary directories it made with `tempDir`, and the
// environment variables it set (settings such as `SAM_MAX_NODES` would reach the next file). Vitest ends its
// workers without an `exit` event.
import { afterAll } from "vitest"
import { removeTempDirs } from "./TempDirs.js"

const env = { ...process.env }

afterAll(() => {
  removeTempDirs()
  for (const key of Object.keys(process.env)) if (!(key in env)) delete process.env[key]
  for (const [key, value] of Object.entries(env)) if (process.env[key] !== value) process.env[key] = value
})
