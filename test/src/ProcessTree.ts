import { readdirSync, readFileSync, readlinkSync } from "node:fs"

/** A process of this machine, as /proc shows it (processes that end while read are skipped). */
export interface Proc {
  readonly pid: number
  readonly ppid: number
  /** its real uid */
  readonly uid: number
  /** a zombie: ended, not yet waited for */
  readonly zombie: boolean
  readonly cmdline: string
  /** its working directory, when readable */
  readonly cwd: string
  /** resident memory in KiB */
  readonly rssKiB: number
}

const read = (pid: number): Proc | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // comm may hold spaces and parentheses: the fields after the last ")" are fixed.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    const status = readFileSync(`/proc/${pid}/status`, "utf8")
    const rss = /VmRSS:\s+(\d+)/.exec(status)
    let cwd = ""
    try {
      cwd = readlinkSync(`/proc/${pid}/cwd`)
    } catch {}
    return {
      pid,
      ppid: Number(fields[1]),
      uid: Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? -1),
      zombie: fields[0] === "Z",
      cmdline: readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " "),
      cwd,
      rssKiB: rss === null ? 0 : Number(rss[1])
    }
  } catch {
    return undefined
  }
}

/** Every process of the machine. */
export const processes = (): ReadonlyArray<Proc> =>
  readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .map((name) => read(Number(name)))
    .filter((p) => p !== undefined)

/** `root` and all its descendants. */
export const processTree = (root = process.pid): ReadonlyArray<Proc> => {
  const all = processes()
  const children = new Map<number, Array<Proc>>()
  for (const p of all) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p])
  const out: Array<Proc> = []
  const visit = (pid: number) => {
    const self = all.find((p) => p.pid === pid)
    if (self !== undefined) out.push(self)
    for (const child of children.get(pid) ?? []) visit(child.pid)
  }
  visit(root)
  return out
}

/** Resident memory of `root`'s process tree, in MiB. */
export const treeRssMiB = (root = process.pid) =>
  Math.round(processTree(root).reduce((sum, p) => sum + p.rssKiB, 0) / 1024)

/** A vm-agent's command line, run from source (tsx) or compiled (`./sam`, SAM_COMPILED=1). */
export const isVmAgent = (cmdline: string) =>
  cmdline.includes("vm-agent/src/main.ts") || cmdline.includes("dist/vm-agent.mjs")

/** The demo agent's command line, from source or compiled. */
export const isDemoAgent = (cmdline: string) =>
  cmdline.includes("demo/main.ts") || cmdline.includes("dist/demo-agent.mjs")

/**
 * The vm-agents running now whose environment holds every one of `entries` (`NAME=value`: the local provider
 * gives each its `SAM_NODE_ID` and `SAM_DATA_DIR`).
 */
export const vmAgentPids = (...entries: ReadonlyArray<string>): Array<number> =>
  processes()
    .filter((p) => isVmAgent(p.cmdline))
    .filter((p) => {
      let vars: Array<string> = []
      try {
        vars = readFileSync(`/proc/${p.pid}/environ`, "utf8").split("\0")
      } catch {}
      return entries.every((entry) => vars.includes(entry))
    })
    .map((p) => p.pid)
