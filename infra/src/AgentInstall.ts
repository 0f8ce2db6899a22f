import { existsSync } from "node:fs"
import { chmod, mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises"
import { homedir } from "node:os"
import { dirname, join } from "node:path"
import * as Api from "@sam/bus/api"
import { Effect } from "effect"
import { isRoot, run } from "./Host.js"
import { StackError } from "./StackError.js"

type AgentKind = Api.Harness["id"]

/**
 * The node-level agent cache, the same rule as the vm-agent's (vm-agent/src/acp/Harnesses.ts): `SAM_AGENT_CACHE`,
 * else /var/cache/sam/agents for root, else ~/.cache/sam/agents.
 */
export const agentCacheDir = (env: NodeJS.ProcessEnv = process.env) =>
  env.SAM_AGENT_CACHE ?? (isRoot() ? "/var/cache/sam/agents" : join(homedir(), ".cache", "sam", "agents"))

const fsStep = (what: string, f: () => Promise<unknown>) =>
  Effect.tryPromise({
    try: f,
    catch: (cause) => new StackError({ step: "agents", message: `${what}: ${cause}`, cause })
  })

/** Every directory and file readable (and directories enterable) by all: workspace users run the agents. */
const readableByAll = async (path: string): Promise<void> => {
  const info = await stat(path)
  await chmod(path, (info.mode & 0o777) | (info.isDirectory() || info.mode & 0o100 ? 0o555 : 0o444))
  if (info.isDirectory()) for (const entry of await readdir(path)) await readableByAll(join(path, entry))
}

export const isInstalled = (agent: AgentKind, cache = agentCacheDir()) => {
  const harness = Api.Harnesses[agent]
  const dir = Api.harnessDir(cache, harness)
  return dir === undefined || existsSync(join(dir, harness.package!.entry))
}

/**
 * Install a harness's pinned packages (and its own Node, when it needs a newer one than the host's) from the npm
 * registry into `<cache>/<id>@<version>`, with no install scripts run (ADR 0024): into a temporary directory first,
 * renamed into place once complete, so a half-done install is never taken for one. Nothing to do when it is there.
 */
export const installAgent = Effect.fn("AgentInstall.install")(function* (
  agent: AgentKind,
  options: { readonly cache?: string; readonly onLine?: (line: string) => void } = {}
) {
  const cache = options.cache ?? agentCacheDir()
  const harness = Api.Harnesses[agent]
  const dir = Api.harnessDir(cache, harness)
  if (dir === undefined || isInstalled(agent, cache)) return dir
  const tmp = `${dir}.tmp-${process.pid}`
  yield* fsStep(`cannot prepare ${tmp}`, async () => {
    await mkdir(dirname(dir), { recursive: true })
    await chmod(dirname(dir), 0o755)
    await rm(tmp, { recursive: true, force: true })
    await mkdir(tmp, { recursive: true })
    await writeFile(join(tmp, "package.json"), `${JSON.stringify({ private: true, name: `sam-${agent}` })}\n`)
  })
  yield* run(
    "agents",
    "npm",
    [
      "install",
      "--prefix",
      tmp,
      "--no-audit",
      "--no-fund",
      "--ignore-scripts",
      "--omit=dev",
      "--save-exact",
      "--loglevel=error",
      ...Api.harnessPackages(harness)
    ],
    options.onLine
  ).pipe(Effect.tapError(() => fsStep("cleanup", () => rm(tmp, { recursive: true, force: true }))))
  if (!existsSync(join(tmp, harness.package!.entry)))
    return yield* new StackError({
      step: "agents",
      message: `${harness.package!.name} installed, but ${harness.package!.entry} is missing`
    })
  yield* fsStep(`cannot finish ${dir}`, async () => {
    await readableByAll(tmp)
    await rm(dir, { recursive: true, force: true })
    await rename(tmp, dir)
  })
  return dir
})
