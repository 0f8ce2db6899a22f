import { defineConfig } from "vitest/config"

const configured = Number(process.env.SAM_TEST_WORKERS)
const workers = Number.isInteger(configured) && configured > 0 ? configured : 1

export default defineConfig({
  test: {
    // One file at a time by default. Two at a time (`SAM_TEST_WORKERS=2`) took 17–20 min instead of 24, but the
    // files that run the report ingress on the shared test stack (session-transcript, session-scoping) take each
    // other's reports when they run side by side: they need stacks of their own first.
    fileParallelism: true,
    maxWorkers: workers,
    minWorkers: 1,
    projects: ["bus", "sql", "infra", "actors", "vm-agent", "gateway", "web", "test"]
  }
})
