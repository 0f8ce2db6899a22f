import type { TestProject } from "vitest/node"
import { type ProvidedStack, startTestStack, toProvided } from "./TestStack.js"

declare module "vitest" {
  export interface ProvidedContext {
    stack: ProvidedStack
  }
}

/** One stack for the whole integration run; each test file takes its own database and names. */
export default async function setup(project: TestProject) {
  const running = await startTestStack()
  project.provide("stack", toProvided(running.stack))
  return () => running.close()
}
