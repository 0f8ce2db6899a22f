import { defineProject } from "vitest/config"

export default defineProject({
  // files share a worker's loaded modules (see the root vitest.config.ts)
  test: { name: "web", include: ["test/**/*.test.ts"], isolate: false }
})
