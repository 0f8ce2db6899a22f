import { readdirSync, readFileSync } from "node:fs"

/** CPU time (user + system, ms) used so far by each process of a kind, by pid; this process under `own`. */
export type CpuReading = ReadonlyMap<string, { readonly kind: string; readonly ms: number }>

/** CPU time (user + system, ms) a process has used so far, from /proc; throws when it has ended. */
export const processCpuMs = (pid: number | string) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) * (1000 / 100) // USER_HZ ticks
}

/**
 * CPU time used so far by the machine's processes of each kind: the vm-agents, the demo agents, nats-server,
 * Postgres, and this process (under `own`), each process on its own: `cpuPer` takes the difference process by
 * process.
 */
export const cpuByKind = (own: string): CpuReading => {
  const reading = new Map<string, { kind: string; ms: number }>()
  for (const pid of readdirSync("/proc").filter((name) => /^[0-9]+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8")
      const kind = cmdline.includes("vm-agent")
        ? "vm-agent"
        : cmdline.includes("demo-agent") || cmdline.includes("demo/main")
          ? "demo agent"
          : cmdline.startsWith("nats-server")
            ? "nats-server"
            : cmdline.startsWith("postgres")
              ? "postgres"
              : undefined
      if (kind === undefined) continue
      reading.set(pid, { kind, ms: processCpuMs(pid) })
    } catch {
      // the process ended meanwhile
    }
  }
  const usage = process.cpuUsage()
  reading.set("own", { kind: own, ms: (usage.user + usage.system) / 1000 })
  return reading
}

/**
 * CPU time per unit of work (µs) by kind of process between two readings of `cpuByKind`, the largest first. Each
 * process counts what it used between the two; one started in between counts all it used, and one that ended in
 * between is not counted (a Postgres backend whose connection closed): a kind's figure may be low, never below 0.
 */
export const cpuPer = (before: CpuReading, after: CpuReading, units: number) => {
  const byKind = new Map<string, number>()
  for (const [pid, { kind, ms }] of after) {
    const earlier = before.get(pid)
    // a pid used again by another process since is a process started in between
    const used = earlier !== undefined && earlier.kind === kind && earlier.ms <= ms ? ms - earlier.ms : ms
    byKind.set(kind, (byKind.get(kind) ?? 0) + used)
  }
  for (const { kind } of before.values()) if (!byKind.has(kind)) byKind.set(kind, 0)
  return [...byKind].map(([kind, ms]) => ({ kind, us: (ms * 1000) / units })).sort((a, b) => b.us - a.us)
}
