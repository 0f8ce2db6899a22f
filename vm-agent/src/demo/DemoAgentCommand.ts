import { createRequire } from "node:module"
import { fileURLToPath, pathToFileURL } from "node:url"
import type { HarnessCommand } from "../acp/HarnessCommand.js"

const tsxLoader = () => createRequire(import.meta.url).resolve("tsx")
const demoMain = () => fileURLToPath(new URL("./main.ts", import.meta.url))
/** `./sam` runs compiled JavaScript (SAM_COMPILED=1, built by infra/build.mjs): so does the demo agent then. */
export const demoAgentCompiled = () =>
  process.env.SAM_COMPILED === "1" || process.env.SAM_DEMO_AGENT_BUNDLE !== undefined
/**
 * The demo agent compiled into one file by infra/build.mjs (`dist/demo-agent.mjs`); a remote node's artifact puts
 * it beside the vm-agent (`SAM_DEMO_AGENT_BUNDLE`, ADR 0027).
 */
export const demoAgentBundle = (env: NodeJS.ProcessEnv = process.env) =>
  env.SAM_DEMO_AGENT_BUNDLE ?? fileURLToPath(new URL("../../../dist/demo-agent.mjs", import.meta.url))

/**
 * The harness command that runs the built-in demo agent from source with tsx. The loader is passed by absolute
 * URL because the agent runs in the workspace directory, where `--import tsx` would not resolve.
 */
export const demoAgentCommand = (options: {
  readonly cwd: string
  readonly env?: Readonly<Record<string, string>>
}): HarnessCommand => ({
  argv: demoAgentCompiled()
    ? [process.execPath, demoAgentBundle()]
    : [process.execPath, "--import", pathToFileURL(tsxLoader()).href, demoMain()],
  cwd: options.cwd,
  env: { ...options.env }
})

/**
 * The demo agent's command inside a workspace container: the host's node binary mounted at `node` runs the
 * bundle mounted at `bundle`, also when the vm-agent runs from source. DockerRuntime mounts that one file, never
 * our checkout, which holds `.sam` and `.git` (ADR 0049). Paths are those the container sees.
 */
export const demoAgentCommandInContainer = (options: {
  readonly node: string
  readonly bundle: string
  readonly cwd: string
  readonly env?: Readonly<Record<string, string>>
}): HarnessCommand => ({ argv: [options.node, options.bundle], cwd: options.cwd, env: { ...options.env } })
