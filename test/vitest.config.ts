import { defineProject } from "vitest/config"

/**
 * Files whose subject is state a process holds once, for all its users: they run each in a process of its own
 * (the project `integration-alone`, `vitest.alone.config.ts`).
 */
export const ALONE = [
  // the ledger client's cap on prepared statements is the process's (ADR 0033)
  "integration/sql/prepared.test.ts",
  // Effect's TestClock: `TestClock.adjust` found no test clock after other files had run in the same process
  "integration/hetzner/create-retry.test.ts"
]

/**
 * The integration files share their worker processes (`isolate: false`): a file's process has loaded Effect,
 * the actors and the gateway already when the next file starts, which takes 2–4 s of loading off every file
 * (ADR 0045). Each file still has its own database, names, ports and servers (ADR 0002), and puts back
 * what it changes of `process.env`.
 */
export default defineProject({
  test: {
    name: "integration",
    include: ["integration/**/*.test.ts", "security/**/*.test.ts", "faults/**/*.test.ts"],
    exclude: ALONE,
    isolate: false,
    globalSetup: ["./src/globalSetup.ts"],
    setupFiles: ["./src/removeTempDirs.ts"],
    // Tests play several users of one machine on local repositories; test/security checks `owner` and `none`.
    env: { SAM_ALLOW_LOCAL_REPOS: "all" },
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
