import { defineProject } from "vitest/config"

export default defineProject({
  test: {
    name: "integration",
    include: ["integration/**/*.test.ts", "security/**/*.test.ts"],
    globalSetup: ["./src/globalSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
