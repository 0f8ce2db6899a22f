import { defineProject } from "vitest/config"

export default defineProject({
  test: { name: "vm-agent", include: ["test/**/*.test.ts"], testTimeout: 60_000 }
})
