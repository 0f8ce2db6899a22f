import { defineProject } from "vitest/config"

export default defineProject({
  test: {
    name: "vm-agent",
    include: ["test/**/*.test.ts"],
    setupFiles: ["../test/src/perFile.ts"],
    testTimeout: 60_000
  }
})
