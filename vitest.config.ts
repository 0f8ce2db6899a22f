import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    // One file at a time: the integration files start servers and child processes and measure
    // takeovers and grace periods; on 2 cores, running them side by side makes timing flaky.
    fileParallelism: false,
    maxWorkers: 1,
    minWorkers: 1,
    projects: ["bus", "sql", "infra", "actors", "vm-agent", "gateway", "web", "test"]
  }
})
