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
    projects: ["bus", "sql", "infra", "actors", "vm-agent", "gateway", "web", "test"]
  }
})
