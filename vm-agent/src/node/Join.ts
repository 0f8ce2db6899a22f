import { existsSync } from "node:fs"
import { homedir } from "node:os"
import { join } from "node:path"

export const JOIN_USAGE = `usage: sam node join <control plane URL> <join token> [--dir DIR] [--runtime auto|docker|host]
       sam node run [--dir DIR]        (again, after a restart: the node keeps its identity in DIR)
Get a join token with \`sam node token\`, POST /api/v1/nodes/join-token, or the web app's nodes page.`

/** Where a joined machine keeps its node identity: /var/lib/sam-node as root, else ~/.sam-node. */
export const defaultStateDir = () => (process.getuid?.() === 0 ? "/var/lib/sam-node" : join(homedir(), ".sam-node"))

export class JoinUsageError extends Error {}

/**
 * `node join <url> <token>` and `node run` (ADR 0027): the environment that makes this vm-agent
 * trade the join token for its node's credentials (Bootstrap.ts) and run in the foreground, or run
 * again as the node it joined as. Undefined when the arguments are not a `node` command.
 */
export const joinEnv = (argv: ReadonlyArray<string>, env: NodeJS.ProcessEnv): NodeJS.ProcessEnv | undefined => {
  if (argv[0] !== "node") return undefined
  const [, sub, ...rest] = argv
  const positional: Array<string> = []
  let dir = env.SAM_NODE_STATE_DIR ?? defaultStateDir()
  let runtime = env.SAM_NODE_RUNTIME
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!
    if (arg === "--dir" && rest[i + 1] !== undefined) dir = rest[++i]!
    else if (arg === "--runtime" && rest[i + 1] !== undefined) runtime = rest[++i]
    else if (arg.startsWith("--")) throw new JoinUsageError(`unknown option ${arg}\n${JOIN_USAGE}`)
    else positional.push(arg)
  }
  if (sub === "run") {
    if (!existsSync(join(dir, "node.creds")))
      throw new JoinUsageError(`${dir} holds no node: join first\n${JOIN_USAGE}`)
    return { ...env, SAM_NODE_STATE_DIR: dir, ...(runtime === undefined ? {} : { SAM_NODE_RUNTIME: runtime }) }
  }
  if (sub !== "join" || positional.length !== 2) throw new JoinUsageError(JOIN_USAGE)
  const [url, token] = positional as [string, string]
  if (!/^https?:\/\/\S+$/.test(url)) throw new JoinUsageError(`${url} is not an http(s) URL\n${JOIN_USAGE}`)
  if (existsSync(join(dir, "node.creds")))
    throw new JoinUsageError(`${dir} is a node already (sam node run starts it); remove it to join as a new node`)
  return {
    ...env,
    SAM_NODE_STATE_DIR: dir,
    SAM_BOOTSTRAP_URL: url,
    SAM_BOOTSTRAP_TOKEN: token,
    ...(runtime === undefined ? {} : { SAM_NODE_RUNTIME: runtime })
  }
}
