// The suite's setup file: what a test file made with `tempDir` goes once the file is done (its own afterAll
// hooks, which stop its stacks, run first). Vitest ends its workers without an `exit` event.
import { afterAll } from "vitest"
import { removeTempDirs } from "./TempDirs.js"

afterAll(removeTempDirs)
