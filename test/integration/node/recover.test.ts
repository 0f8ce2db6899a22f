import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { mkdir, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { layer } from "@effect/vitest"
import { makeId } from "@sam/bus"
import { Effect } from "effect"
import { expect } from "vitest"
import { natsAdmin, waitUntil } from "../../src/Env.js"
import { is, nodeUnderTest, reportWaiter, startVmAgent } from "../../src/VmAgentProcess.js"

/** When process `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat). */
const startTicks = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19])
}
const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ")
  } catch {
    return false
  }
}

layer(natsAdmin(), { excludeTestServices: true, timeout: 60_000 })("a vm-agent that starts again", (it) => {
  it.scoped("ends its agents' process groups from before only while they are still theirs, not another program's", () =>
    Effect.gen(function* () {
      const { nodeId, node, reports } = yield* nodeUnderTest
      // Two programs that are not agents, each leading a process group whose number a session record names:
      // one started at another time than the record says (the number went to it after the agent ended), one in
      // another boot of the machine (the records outlived a reboot).
      const others = [0, 1].map(() => spawn("sleep", ["60"], { detached: true, stdio: "ignore" }))
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          for (const other of others) other.kill("SIGKILL")
        })
      )
      const boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim()
      const [later, rebooted] = others.map((o) => o.pid!)
      const records = [
        { pgid: later!, agentStart: { ticks: startTicks(later!) - 1, boot } },
        { pgid: rebooted!, agentStart: { ticks: startTicks(rebooted!), boot: "00000000-0000-0000-0000-000000000000" } }
      ]
      const dir = join(node.dataDir, "sessions")
      yield* Effect.promise(async () => {
        await mkdir(dir, { recursive: true, mode: 0o700 })
        for (const { pgid, agentStart } of records) {
          const sessionId = makeId("sess")
          await writeFile(
            join(dir, `${sessionId}.json`),
            JSON.stringify({
              sessionId,
              workspaceId: makeId("ws"),
              agent: "demo",
              mode: "conversation",
              agentPgid: pgid,
              agentStart,
              lastSeq: 3,
              promptEpoch: 1
            }),
            { mode: 0o600 }
          )
        }
      })
      const agent = startVmAgent(nodeId, node)
      yield* Effect.addFinalizer(() => Effect.sync(() => agent.child.kill("SIGKILL")))
      const { waitFor } = reportWaiter(reports, () => agent.output())
      yield* waitFor("node.ready", is("node.ready"), "30 seconds")
      // recovered: both said to be left alone (or, before, killed)
      yield* waitUntil(
        "both records recovered",
        Effect.sync(() => {
          const leftAlone = (agent.output().match(/not its own any more; left alone/g) ?? []).length
          return leftAlone === 2 || !alive(later!) || !alive(rebooted!) || undefined
        }),
        { timeout: "15 seconds" }
      )
      // Before, the vm-agent killed both groups (as root, on a real node any program's).
      expect([alive(later!), alive(rebooted!)]).toEqual([true, true])
    })
  )
})
