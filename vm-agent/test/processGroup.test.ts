import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { groupAlive, signalGroup } from "../src/runtime/internal/processGroup.js"

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
