import { dirname } from "node:path"

const SYSTEM_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]

/**
 * The environment an agent or a workspace process starts from, before the workspace's own variables and the
 * agent's: never the vm-agent's (the path to its NATS credentials, and whatever secrets the process that started it
 * had). PATH is the system's plus node's directory, not the vm-agent's (which may name root-only directories); LANG
 * so that tools speak UTF-8. Nothing else: tsx needs no NODE_OPTIONS (the loader is an argument) and keeps its cache
 * in os.tmpdir(), /tmp without TMPDIR.
 */
export const baseEnv = (home: string): Record<string, string> => ({
  PATH: [...new Set([dirname(process.execPath), ...SYSTEM_PATH])].join(":"),
  LANG: process.env.LANG ?? "C.UTF-8",
  HOME: home
})
