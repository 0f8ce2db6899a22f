import { defineProject } from "vitest/config"

export default defineProject({
  test: {
    name: "vm-agent",
    include: ["test/**/*.test.ts"],
    setupFiles: ["../test/src/removeTempDirs.ts"],
    testTimeout: 60_000,
    // files share a worker's loaded modules (see the root vitest.config.ts)
    isolate: false
  }
})
