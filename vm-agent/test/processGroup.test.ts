import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import {
  bootTicks,
  groupAlive,
  signalGroup,
  signalStartedSince,
  startedSince
} from "../src/runtime/internal/processGroup.js"

const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] ?? "")
  } catch {
    return false
  }
}

const sessionOf = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[3])
}

const until = async (what: string, check: () => boolean, ms = 5000) => {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe("signalGroup", () => {
  it("also kills a descendant that moved to a session of its own (an agent's tool command)", async () => {
    // the leader starts a command in a new session, as Claude Code does with its Bash tool, and says its pid
    const leader = spawn("/bin/sh", ["-c", "setsid /bin/sh -c 'echo $$; exec sleep 300' & wait"], {
      detached: true,
      stdio: ["ignore", "pipe", "ignore"]
    })
    const stray = await new Promise<number>((resolve) =>
      leader.stdout.once("data", (chunk: Buffer) => resolve(Number(chunk.toString().trim())))
    )
    await until("the stray runs in a session of its own", () => alive(stray) && sessionOf(stray) === stray)
    expect(signalGroup(leader.pid!, "SIGKILL")).toBe(true)
    await until("the stray is gone", () => !alive(stray))
    await until("the group is gone", () => !groupAlive(leader.pid!))
  })
})

const startOf = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19])
}

describe("signalStartedSince", () => {
  it("kills what a group started after a mark (a turn's tool commands, also in a session of their own), not what it had before nor its leader", async () => {
    // an agent with a helper from before the turn; on a line in, the turn starts a command and a stray one
    const leader = spawn(
      "/bin/sh",
      ["-c", "sleep 300 & echo $!; read x; sleep 301 & echo $!; setsid /bin/sh -c 'echo $$; exec sleep 302' & wait"],
      { detached: true, stdio: ["pipe", "pipe", "ignore"] }
    )
    const pids: Array<number> = []
    leader.stdout.on("data", (chunk: Buffer) => pids.push(...chunk.toString().trim().split(/\s+/).map(Number)))
    await until("the helper runs", () => pids.length === 1 && alive(pids[0]!))
    const helper = pids[0]!
    await until("the clock is past the helper's start", () => bootTicks()! > startOf(helper))
    const since = bootTicks()!
    leader.stdin.write("go\n")
    await until("the turn's commands run", () => pids.length === 3 && alive(pids[1]!) && alive(pids[2]!))
    const [, command, stray] = pids as [number, number, number]
    await until("the stray runs in a session of its own", () => sessionOf(stray) === stray)
    expect(startedSince(leader.pid!, since).sort()).toEqual([command, stray].sort())
    signalStartedSince(leader.pid!, since, "SIGKILL")
    await until("the turn's commands are gone", () => !alive(command) && !alive(stray))
    expect(startedSince(leader.pid!, since)).toEqual([])
    expect(alive(helper) && alive(leader.pid!)).toBe(true)
    signalGroup(leader.pid!, "SIGKILL")
    await until("the group is gone", () => !groupAlive(leader.pid!))
  })
})
