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

/** Signals group `pgid` on this host; false if it no longer exists. */
export const signalGroup = (pgid: number, signal: NodeJS.Signals): boolean => {
  try {
    process.kill(-pgid, signal)
    return true
  } catch {
    return false
  }
}
