import { readdirSync, readFileSync, readlinkSync } from "node:fs"
import { Effect } from "effect"

/**
 * The demo agents running on this machine: /proc shows the host runtime's and the containers' alike. The warm one
 * (ADR 0055), booted for the next workspace and waiting in `/` for its start line, is no session's.
 */
export const demoAgents = () => {
  let sessions = 0
  const warm: Array<string> = []
  for (const pid of readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(pid)) continue
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("demo-agent")) continue
      if (readlinkSync(`/proc/${pid}/cwd`) === "/") warm.push(pid)
      else sessions += 1
    } catch {}
  }
  return { sessions, warm }
}

/** The CPU time a process has used so far, in clock ticks (user and system); -1 once it is gone. */
const cpuTicks = (pid: string) => {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? []
    return Number(fields[11]) + Number(fields[12])
  } catch {
    return -1
  }
}

/**
 * A warm agent that has booted (and rehearsed, ADR 0055) and waits for its start line: it has used no CPU for 150 ms.
 * One that is still booting uses a core the whole time.
 */
export const warmAgentBooted = Effect.gen(function* () {
  const deadline = Date.now() + 10_000
  let still = 0
  let last = -1
  while (Date.now() < deadline) {
    const pid = demoAgents().warm[0]
    const ticks = pid === undefined ? -1 : cpuTicks(pid)
    still = ticks >= 0 && ticks === last ? still + 1 : 0
    last = ticks
    if (still >= 15) return true
    yield* Effect.sleep("10 millis")
  }
  return false
})
