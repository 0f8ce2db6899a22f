import { defineProject } from "vitest/config"

export default defineProject({
  test: {
    name: "integration",
    include: ["integration/**/*.test.ts", "security/**/*.test.ts", "faults/**/*.test.ts"],
    globalSetup: ["./src/globalSetup.ts"],
    setupFiles: ["./src/removeTempDirs.ts"],
    // Tests play several users of one machine on local repositories; test/security checks `owner` and `none`.
    env: { SAM_ALLOW_LOCAL_REPOS: "all" },
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
