import { defineProject } from "vitest/config"
import integration, { ISOLATED } from "./vitest.config.js"

/**
 * The integration files that need modules of their own (`ISOLATED`): the `threads` pool, whose workers load a
 * fresh set for each file (the root config's `poolOptions`; the `forks` pool's workers keep theirs).
 */
export default defineProject({
  test: { ...integration.test, name: "integration-isolated", include: ISOLATED, exclude: [], pool: "threads" }
})
