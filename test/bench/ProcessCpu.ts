import { readdirSync, readFileSync } from "node:fs"

/**
 * CPU time (user + system, ms) used so far by the machine's processes of each kind: the vm-agents, the
 * demo agents, nats-server, Postgres, and this process (under `own`). A process that ended meanwhile no
 * longer counts, so take the figures of one window from processes that live through it.
 */
export const cpuByKind = (own: string) => {
  const tick = 1000 / 100 // USER_HZ
  const kinds: Record<string, number> = { "vm-agent": 0, "demo agent": 0, "nats-server": 0, postgres: 0 }
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
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      kinds[kind] = (kinds[kind] ?? 0) + (Number(fields[11]) + Number(fields[12])) * tick
    } catch {
      // the process ended meanwhile
    }
  }
  const usage = process.cpuUsage()
  kinds[own] = (usage.user + usage.system) / 1000
  return kinds
}

/** CPU time per unit of work (µs) by kind of process between two readings of `cpuByKind`, the largest first. */
export const cpuPer = (before: Record<string, number>, after: Record<string, number>, units: number) =>
  Object.entries(after)
    .map(([kind, ms]) => ({ kind, us: ((ms - (before[kind] ?? 0)) * 1000) / units }))
    .sort((a, b) => b.us - a.us)
