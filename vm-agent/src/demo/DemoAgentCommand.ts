import { createRequire } from "node:module"
import { fileURLToPath, pathToFileURL } from "node:url"
import type { HarnessCommand } from "../acp/HarnessCommand.js"

/**
 * The harness command that runs the built-in demo agent from source with tsx. The loader is passed by absolute
 * URL because the agent runs in the workspace directory, where `--import tsx` would not resolve.
 */
export const demoAgentCommand = (options: {
  readonly cwd: string
  readonly env?: Readonly<Record<string, string>>
}): HarnessCommand => ({
  argv: [
    process.execPath,
    "--import",
    pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href,
    fileURLToPath(new URL("./main.ts", import.meta.url))
  ],
  cwd: options.cwd,
  env: { ...options.env }
})
