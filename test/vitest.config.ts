import { defineProject } from "vitest/config"

/**
 * Files that need modules of their own: one counts what its process has prepared (sql/src/Sql.ts keeps that per
 * process), one runs on Effect's TestClock. They are the `integration-isolated` project (vitest.isolated.config.ts).
 */
export const ISOLATED = ["integration/sql/prepared.test.ts", "integration/hetzner/create-retry.test.ts"]

export default defineProject({
  test: {
    name: "integration",
    include: ["integration/**/*.test.ts", "security/**/*.test.ts", "faults/**/*.test.ts"],
    exclude: ISOLATED,
    globalSetup: ["./src/globalSetup.ts"],
    setupFiles: ["./src/perFile.ts"],
    // Tests play several users of one machine on local repositories; test/security checks `owner` and `none`.
    env: { SAM_ALLOW_LOCAL_REPOS: "all" },
    // A test under `layer(Env, { timeout })` gets this bound, not the layer's: long enough for the waits inside
    // the heavy ones (nodes started, tasks run) to fail first and say which condition was slow.
    testTimeout: 180_000,
    hookTimeout: 60_000
  }
})
