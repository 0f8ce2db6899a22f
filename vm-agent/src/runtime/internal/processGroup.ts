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

interface Proc {
  readonly pid: number
  readonly ppid: number
  readonly pgrp: number
  readonly state: string
  /** when it started, in clock ticks since boot */
  readonly start: number
}

/** Every process of this host (its pid namespace), from /proc; none where there is no /proc. */
const allProcesses = (): Array<Proc> => {
  const out: Array<Proc> = []
  let names: Array<string>
  try {
    names = Fs.readdirSync("/proc")
  } catch {
    return out
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = Fs.readFileSync(`/proc/${name}/stat`, "utf8")
      // after "pid (comm) ": state, ppid, pgrp, …, and starttime as the 20th
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      out.push({
        pid: Number(name),
        state: fields[0]!,
        ppid: Number(fields[1]),
        pgrp: Number(fields[2]),
        start: Number(fields[19])
      })
    } catch {
      // The process ended while we looked.
    }
  }
  return out
}

/**
 * The processes of group `pgid` and the descendants of its processes that left it (a new session or group: Claude
 * Code runs each tool command so), found by their parent links in /proc; none where there is no /proc.
 */
const treeOf = (pgid: number): Array<Proc> => {
  const procs = allProcesses()
  const byPid = new Map(procs.map((p) => [p.pid, p]))
  const children = new Map<number, Array<number>>()
  for (const { pid, ppid } of procs) children.set(ppid, [...(children.get(ppid) ?? []), pid])
  const seen = new Set<number>()
  const queue = procs.filter((p) => p.pgrp === pgid).map((p) => p.pid)
  while (queue.length > 0) {
    const pid = queue.pop()!
    if (seen.has(pid)) continue
    seen.add(pid)
    queue.push(...(children.get(pid) ?? []))
  }
  return [...seen].map((pid) => byPid.get(pid)!)
}

const strayDescendants = (pgid: number): Array<number> =>
  treeOf(pgid)
    .filter((p) => p.pgrp !== pgid)
    .map((p) => p.pid)

/** When process `pid` started, in clock ticks since boot (see `bootTicks`); undefined when it does not exist. */
export const processStartTicks = (pid: number): number | undefined => {
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const start = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19])
    return Number.isFinite(start) ? start : undefined
  } catch {
    return undefined
  }
}

/** This boot of the machine's kernel (`/proc/sys/kernel/random/boot_id`); undefined where there is none. */
export const bootId = (): string | undefined => {
  try {
    return Fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim()
  } catch {
    return undefined
  }
}

/**
 * Whether process group `pgid` is still the one whose leader started at `startTicks` in boot `boot`: after a
 * reboot nothing of it runs, and a leader that started at another time is another program's that got the
 * number. A group whose leader has ended while others of it run is still it (the kernel hands out no pid that
 * is still a group's id).
 */
export const sameGroup = (pgid: number, startTicks: number, boot: string): boolean => {
  if (bootId() !== boot) return false
  const leader = processStartTicks(pgid)
  return leader === undefined ? groupAlive(pgid) : leader === startTicks
}

/**
 * The kernel's clock since boot in clock ticks (USER_HZ, 100 on Linux), the clock of a process's start time in
 * /proc/<pid>/stat; undefined where there is no /proc. Containers share it: they run on the same kernel.
 */
export const bootTicks = (): number | undefined => {
  try {
    const seconds = Number(Fs.readFileSync("/proc/uptime", "utf8").split(" ")[0])
    return Number.isFinite(seconds) ? Math.floor(seconds * 100) : undefined
  } catch {
    return undefined
  }
}

/**
 * The processes of group `pgid` and of its strays' trees that started at or after `since` (see `bootTicks`), the
 * leader excepted, and are not zombies: what an agent started during a turn that began at `since`.
 */
export const startedSince = (pgid: number, since: number): Array<number> =>
  treeOf(pgid)
    .filter((p) => p.pid !== pgid && p.start >= since && p.state !== "Z" && p.state !== "X")
    .map((p) => p.pid)

/** Signals what `startedSince(pgid, since)` finds: a turn's processes, not the agent that ran it. */
export const signalStartedSince = (pgid: number, since: number, signal: NodeJS.Signals): void => {
  for (const pid of startedSince(pgid, since)) {
    try {
      process.kill(pid, signal)
    } catch {
      // gone already
    }
  }
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

/**
 * SIGKILLs every process that has `arg` as one of its arguments, and the process group each one leads: a clone into a
 * workspace's checkout that outlived the vm-agent which started it (killed mid-create), whose helpers are in its group.
 */
export const killWithArgument = (arg: string): void => {
  let pids: Array<string>
  try {
    pids = Fs.readdirSync("/proc").filter((name) => /^\d+$/.test(name))
  } catch {
    return
  }
  for (const name of pids) {
    const pid = Number(name)
    if (pid === process.pid) continue
    let argv: Array<string>
    try {
      argv = Fs.readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0")
    } catch {
      continue
    }
    if (!argv.includes(arg)) continue
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, "SIGKILL")
      } catch {}
    }
  }
}
