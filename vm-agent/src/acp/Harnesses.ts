import { existsSync } from "node:fs"
import { homedir } from "node:os"
import { join, posix } from "node:path"
import { Api, type Domain } from "@sam/bus"
import type { HarnessCommand } from "./HarnessCommand.js"

type AgentKind = Domain.NodeProtocol.AgentKind
type AgentLaunch = Domain.AgentLaunch.AgentLaunch

/**
 * The node-level cache real agents are installed into (`sam agents install`): `SAM_AGENT_CACHE`, else
 * /var/cache/sam/agents for root, else ~/.cache/sam/agents. Workspaces read it: on the host it must be readable by
 * every workspace user (npm's 0755/0644 are); a container mounts it read-only at `AGENTS_IN_CONTAINER`.
 */
export const agentCacheDir = (env: NodeJS.ProcessEnv = process.env) =>
  env.SAM_AGENT_CACHE ??
  (process.getuid?.() === 0 ? "/var/cache/sam/agents" : join(homedir(), ".cache", "sam", "agents"))

export const AGENTS_IN_CONTAINER = "/opt/sam/agents"

/** The agents this node can start: the demo agent, and every real one whose pinned install is in the cache. */
export const installedAgents = (cache = agentCacheDir()): Array<AgentKind> =>
  Object.values(Api.Harnesses)
    .filter((h) => {
      const dir = Api.harnessDir(cache, h)
      return dir === undefined || (h.package !== undefined && existsSync(join(dir, h.package.entry)))
    })
    .map((h) => h.id)

/**
 * How to start a real agent in a workspace: its own Node (when it needs a newer one than the host's) or the host's
 * running the pinned entry, or the entry itself when it is a binary. Its variables are the harness's fixed ones,
 * the launch's (runtime variables and the credential), the model's, and the file credential's home (CODEX_HOME):
 * added to the allowlisted PATH, LANG and HOME only, and in this process alone (ADR 0014, 0025).
 */
export const realAgentCommand = (options: {
  readonly agent: Exclude<AgentKind, "demo">
  readonly launch: AgentLaunch
  /** the cache as the workspace sees it */
  readonly cache: string
  /** the host's node, as the workspace sees it */
  readonly node: string
  readonly cwd: string
  readonly home: string
}): HarnessCommand => {
  const harness = Api.Harnesses[options.agent]
  const pkg = harness.package!
  const dir = Api.harnessDir(options.cache, harness)!
  const entry = posix.join(dir, pkg.entry)
  const binary = !entry.endsWith(".js")
  const node = pkg.node === undefined ? options.node : posix.join(dir, Api.HARNESS_NODE)
  const home = (value: string) => (value.startsWith("~/") ? posix.join(options.home, value.slice(2)) : value)
  const authMethod = harness.credentials.find(
    (c) => c.authMethod !== undefined && c.env !== undefined && options.launch.env[c.env] !== undefined
  )?.authMethod
  const fileEnv: Record<string, string> = {}
  for (const spec of harness.credentials) {
    if (spec.file !== undefined && options.launch.files.some((f) => f.path === spec.file))
      for (const [name, value] of Object.entries(spec.fileEnv ?? {})) fileEnv[name] = home(value)
  }
  return {
    argv: binary ? [entry, ...harness.args] : [node, entry, ...harness.args],
    cwd: options.cwd,
    env: {
      ...harness.env,
      ...options.launch.env,
      ...fileEnv,
      ...(options.launch.model !== undefined && harness.modelEnv !== undefined
        ? { [harness.modelEnv]: options.launch.model }
        : {})
    },
    ...(options.launch.sessionMode === undefined ? {} : { sessionMode: options.launch.sessionMode }),
    ...(authMethod === undefined ? {} : { authMethod })
  }
}

/** A launch file's path in the workspace: `~/…` in the home, else in the checkout. */
export const launchFilePath = (path: string, checkout: string, home: string) =>
  path.startsWith("~/") ? posix.join(home, path.slice(2)) : posix.join(checkout, path)
