import { createRequire } from "node:module"
import { isAbsolute, posix, relative, sep } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import type { HarnessCommand } from "../acp/HarnessCommand.js"

const tsxLoader = () => createRequire(import.meta.url).resolve("tsx")
const demoMain = () => fileURLToPath(new URL("./main.ts", import.meta.url))
/** `./sam` runs compiled JavaScript (SAM_COMPILED=1, built by infra/build.mjs): so does the demo agent then. */
const compiled = () => process.env.SAM_COMPILED === "1" || process.env.SAM_DEMO_AGENT_BUNDLE !== undefined
/** A remote node's artifact puts the demo agent beside the vm-agent (`SAM_DEMO_AGENT_BUNDLE`, ADR 0027). */
const demoBundle = () =>
  process.env.SAM_DEMO_AGENT_BUNDLE ?? fileURLToPath(new URL("../../../dist/demo-agent.mjs", import.meta.url))

/**
 * The harness command that runs the built-in demo agent from source with tsx. The loader is passed by absolute
 * URL because the agent runs in the workspace directory, where `--import tsx` would not resolve.
 */
export const demoAgentCommand = (options: {
  readonly cwd: string
  readonly env?: Readonly<Record<string, string>>
}): HarnessCommand => ({
  argv: compiled()
    ? [process.execPath, demoBundle()]
    : [process.execPath, "--import", pathToFileURL(tsxLoader()).href, demoMain()],
  cwd: options.cwd,
  env: { ...options.env }
})

/**
 * The demo agent's command inside a workspace container, where the host's node binary is mounted at `node` and
 * the repository root `appDir` (with its node_modules: pnpm's links are relative, so they resolve there too) at
 * `appMount`. Paths are those the container sees.
 */
export const demoAgentCommandInContainer = (options: {
  readonly node: string
  readonly appDir: string
  readonly appMount: string
  readonly cwd: string
  readonly env?: Readonly<Record<string, string>>
}): HarnessCommand => {
  const inside = (hostPath: string) => {
    const rel = relative(options.appDir, hostPath)
    if (rel.startsWith("..") || isAbsolute(rel)) throw new Error(`${hostPath} is not under ${options.appDir}`)
    return posix.join(options.appMount, ...rel.split(sep))
  }
  return {
    argv: compiled()
      ? [options.node, inside(demoBundle())]
      : [options.node, "--import", `file://${inside(tsxLoader())}`, inside(demoMain())],
    cwd: options.cwd,
    env: { ...options.env }
  }
}
