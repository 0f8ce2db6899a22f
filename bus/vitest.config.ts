import { defineProject } from "vitest/config"

export default defineProject({
  test: { name: "bus", include: ["test/**/*.test.ts"], setupFiles: ["../test/src/perFile.ts"] }
})
