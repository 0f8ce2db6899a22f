import { defineProject } from "vitest/config"
import shared, { ALONE } from "./vitest.config.js"

/** The integration files that run each in a process of their own (`ALONE` in vitest.config.ts). */
export default defineProject({
  ...shared,
  test: { ...shared.test, name: "integration-alone", include: ALONE, exclude: [], isolate: true }
})
