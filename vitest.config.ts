import { defineConfig } from "vitest/config"

const configured = Number(process.env.SAM_TEST_WORKERS)
const workers = Number.isInteger(configured) && configured > 0 ? configured : 2

export default defineConfig({
  test: {
    // Two files at a time (one per core). Each integration file has its own database, subjects, data
    // directories and ports, so files do not share state; run one at a time, the suite took 24 min on
    // this machine with a core idle much of the time, two at a time 17–20 min (CI aims at under 20).
    // `SAM_TEST_WORKERS=1` runs them one at a time again.
    fileParallelism: true,
    maxWorkers: workers,
    minWorkers: 1,
    projects: ["bus", "sql", "infra", "actors", "vm-agent", "gateway", "web", "test"]
  }
})
