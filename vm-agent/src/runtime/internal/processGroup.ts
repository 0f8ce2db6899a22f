import * as Fs from "node:fs"

const signalable = (pgid: number): boolean => {
  try {
    process.kill(-pgid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ESRCH"
  }
}

/** Processes of group `pgid` that are not zombies, from /proc; undefined where there is no /proc. */
const liveMembers = (pgid: number): number | undefined => {
  let pids: Array<string>
  try {
    pids = Fs.readdirSync("/proc").filter((name) => /^\d+$/.test(name))
  } catch {
    return undefined
  }
  let live = 0
  for (const pid of pids) {
    try {
      const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      if (Number(pgrp) === pgid && state !== "Z" && state !== "X") live += 1
    } catch {
      // The process ended while we looked.
    }
  }
  return live
}

/**
 * True while a process of group `pgid` (on this host) can still run. Killed orphans stay zombies until init reaps
 * them (which takes seconds under some inits) and can do nothing, so on Linux they do not count.
 */
export const groupAlive = (pgid: number): boolean => signalable(pgid) && (liveMembers(pgid) ?? 1) > 0

/**
 * The descendants of group `pgid`'s processes that left it (a new session or group: Claude Code runs each tool
 * command so), found by their parent links in /proc; none where there is no /proc.
 */
const strayDescendants = (pgid: number): Array<number> => {
  const procs = new Map<number, { readonly ppid: number; readonly pgrp: number }>()
  try {
    for (const name of Fs.readdirSync("/proc")) {
      if (!/^\d+$/.test(name)) continue
      try {
        const stat = Fs.readFileSync(`/proc/${name}/stat`, "utf8")
        const [, ppid, pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
        procs.set(Number(name), { ppid: Number(ppid), pgrp: Number(pgrp) })
      } catch {
        // The process ended while we looked.
      }
    }
  } catch {
    return []
  }
  const children = new Map<number, Array<number>>()
  for (const [pid, { ppid }] of procs) children.set(ppid, [...(children.get(ppid) ?? []), pid])
  const seen = new Set<number>()
  const queue = [...procs].filter(([, p]) => p.pgrp === pgid).map(([pid]) => pid)
  while (queue.length > 0) {
    const pid = queue.pop()!
    if (seen.has(pid)) continue
    seen.add(pid)
    queue.push(...(children.get(pid) ?? []))
  }
  return [...seen].filter((pid) => procs.get(pid)?.pgrp !== pgid)
}

/**
 * Signals group `pgid` on this host, and the descendants of its processes that moved to groups of their own (a
 * cancel must stop an agent's tool commands too, design §1); false if the group no longer exists. A descendant
 * whose parent already died was adopted by init and is not found: stop and delete end those by uid.
 */
export const signalGroup = (pgid: number, signal: NodeJS.Signals): boolean => {
  for (const pid of strayDescendants(pgid)) {
    try {
      process.kill(pid, signal)
    } catch {
      // gone already
    }
  }
  try {
    process.kill(-pgid, signal)
    return true
  } catch {
    return false
  }
}
