import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    projects: ["bus", "sql", "infra", "actors", "vm-agent", "test"]
  }
})
