import { defineConfig } from "vitest/config"

const configured = Number(process.env.SAM_TEST_WORKERS)
const workers = Number.isInteger(configured) && configured > 0 ? configured : 2

export default defineConfig({
  test: {
    // Two files at a time by default (`SAM_TEST_WORKERS=1` for one): every file has its own database, names,
    // data directories and ports, and the files whose consumers take every node's reports (the control plane's
    // and the report ingress's) have a nats-server of their own (`useOwnNats`, ControlPlaneHarness).
    fileParallelism: true,
    maxWorkers: workers,
    minWorkers: 1,
    // A worker runs its files one after another on the modules it loaded for the first: loading them anew for every
    // file was about a third of the run's CPU (vitest's "collect", 404 s over 129 files; ADR 0053). Vitest 3.2 takes
    // isolation from the pool, so it is set here, not in the projects. What a file leaves in its process (temporary
    // directories, environment variables) goes when it ends (test/src/perFile.ts); the files that need modules of
    // their own are `integration-isolated`, in the `threads` pool, whose workers load them fresh for each file.
    poolOptions: { forks: { isolate: false }, threads: { isolate: true } },
    projects: [
      "bus",
      "sql",
      "infra",
      "actors",
      "vm-agent",
      "gateway",
      "web",
      "test/vitest.config.ts",
      "test/vitest.isolated.config.ts"
    ]
  }
})
