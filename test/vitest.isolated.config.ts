import { defineProject } from "vitest/config"
import integration, { ISOLATED } from "./vitest.config.js"

/** The integration files that need modules of their own (`ISOLATED`), each file with a fresh set as vitest's default. */
export default defineProject({
  test: { ...integration.test, name: "integration-isolated", include: ISOLATED, exclude: [], isolate: true }
})
