import { defineProject } from "vitest/config"

export default defineProject({
  test: {
    name: "integration",
    include: ["integration/**/*.test.ts", "security/**/*.test.ts", "faults/**/*.test.ts"],
    globalSetup: ["./src/globalSetup.ts"],
    setupFiles: ["./src/removeTempDirs.ts"],
    // Tests play several users of one machine on local repositories; test/security checks `owner` and `none`.
    env: { SAM_ALLOW_LOCAL_REPOS: "all" },
    // A test under `layer(Env, { timeout })` gets this bound, not the layer's: long enough for the waits inside
    // the heavy ones (nodes started, tasks run) to fail first and say which condition was slow.
    testTimeout: 180_000,
    hookTimeout: 60_000
  }
})
