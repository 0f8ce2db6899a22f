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
    // A worker runs its files one after another on the modules it loaded for the first (`isolate: false` in each
    // project): loading them anew for every file took about a third of the run (vitest's "collect", 404 s of CPU
    // over 129 files). Files keep nothing of each other's: each has its own database, names, servers and settings
    // (`useSettings` restores what it set); the few that need modules of their own are `integration-isolated`.
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
