import { spawn } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { mkdir, writeFile } from "node:fs/promises"
import { type AddressInfo, createServer, type Socket } from "node:net"
import { join } from "node:path"
import { layer } from "@effect/vitest"
import { Domain, makeId } from "@sam/bus"
import { Effect } from "effect"
import { expect } from "vitest"
import { natsAdmin, waitUntil } from "../../src/Env.js"
import { processes } from "../../src/ProcessTree.js"
import { is, nodeUnderTest, reportWaiter, runningWorkspace, startVmAgent } from "../../src/VmAgentProcess.js"

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

  it.scoped(
    "ends what the last run's turn left running, also a tool that left its agent's process group (as root), and removes its partial branch bundles",
    () =>
      Effect.gen(function* () {
        const { nodeId, node, repo, reports, send } = yield* nodeUnderTest
        let agent = startVmAgent(nodeId, node)
        yield* Effect.addFinalizer(() => Effect.sync(() => agent.child.kill("SIGKILL")))
        const { waitFor } = reportWaiter(reports, () => agent.output())
        yield* waitFor("node.ready", is("node.ready"), "30 seconds")
        const workspaceId = yield* runningWorkspace(send, waitFor, repo)
        // A tool that puts a process in a session of its own (as Claude Code runs each command), then the turn waits.
        const marker = `${600 + Math.floor(Math.random() * 1000)}.5`
        const strays = () => processes().filter((p) => p.cmdline.trim() === `sleep ${marker}`)
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            for (const p of strays()) process.kill(p.pid, "SIGKILL")
          })
        )
        const sessionId = makeId("sess")
        yield* send(
          Domain.NodeProtocol.SessionStart.make({
            sessionId,
            workspaceId,
            agent: "demo",
            mode: "conversation",
            prompt: `run setsid sleep ${marker} < /dev/null > /dev/null 2>&1 & sleep 60`
          })
        )
        yield* waitUntil(
          "the tool's process in a session of its own",
          Effect.sync(() => (strays().length === 1 ? true : undefined)),
          { timeout: "20 seconds" }
        )
        agent.child.kill("SIGKILL")
        yield* Effect.promise(() => agent.exited)
        // A keep of this workspace's branches cut short by the kill left its partial bundle; another node sharing the
        // branch directory may be writing its own.
        const branches = join(node.dataDir, "branches")
        const partial = join(branches, `${workspaceId}.bundle.0badc0de.tmp`)
        const anothers = join(branches, `${makeId("ws")}.bundle.0badc0de.tmp`)
        yield* Effect.promise(async () => {
          await mkdir(branches, { recursive: true, mode: 0o700 })
          for (const file of [partial, anothers]) await writeFile(file, "PACK")
        })
        agent = startVmAgent(nodeId, node)
        yield* waitFor(
          "the turn reported lost",
          is("session.activity-reported", (r) => r.body.sessionId === sessionId && r.body.stopReason === "lost"),
          "30 seconds"
        )
        expect([existsSync(partial), existsSync(anothers)]).toEqual([false, true])
        // Before, only the agent's process group was ended: the tool's process ran on, with no owner, for ever.
        if (process.getuid?.() === 0) expect(strays()).toEqual([])
      })
  )

  it.scoped(
    "a create delivered again after its workspace's delete (sent while the vm-agent restarted) does not bring it back",
    () =>
      Effect.gen(function* () {
        const { nodeId, node, reports, send } = yield* nodeUnderTest
        // A repository server that accepts and never answers: the create is still cloning when the vm-agent dies.
        const sockets: Array<Socket> = []
        const silent = createServer((socket) => void sockets.push(socket))
        yield* Effect.acquireRelease(
          Effect.async<void>((done) => void silent.listen(0, "127.0.0.1", () => done(Effect.void))),
          () =>
            Effect.sync(() => {
              for (const socket of sockets) socket.destroy()
              silent.close()
            })
        )
        const repoUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/slow.git`
        const env = { SAM_CLONE_STALL_MS: "4000" }
        let agent = startVmAgent(nodeId, node, env)
        yield* Effect.addFinalizer(() => Effect.sync(() => agent.child.kill("SIGKILL")))
        const { waitFor } = reportWaiter(reports, () => agent.output())
        yield* waitFor("node.ready", is("node.ready"), "30 seconds")
        const workspaceId = makeId("ws")
        yield* send(
          Domain.NodeProtocol.WorkspaceCreate.make({
            workspaceId,
            projectId: makeId("proj"),
            repoUrl,
            env: [],
            files: []
          })
        )
        yield* waitUntil(
          "the clone waiting on the silent server",
          Effect.sync(() => (sockets.length > 0 ? true : undefined)),
          { timeout: "20 seconds" }
        )
        agent.child.kill("SIGKILL")
        yield* Effect.promise(() => agent.exited)
        agent = startVmAgent(nodeId, node, env)
        yield* waitUntil(
          "node.ready again",
          reports.all().pipe(Effect.map((all) => (all.filter(is("node.ready")).length >= 2 ? true : undefined))),
          { timeout: "30 seconds" }
        )
        // The user deletes it meanwhile: the delete is new, so it comes before the create's redelivery.
        yield* send(Domain.NodeProtocol.WorkspaceDelete.make({ workspaceId }))
        const deleted = yield* waitFor(
          "the delete reported",
          is("workspace.status-reported", (r) => r.body.workspaceId === workspaceId && r.body.status === "deleted")
        )
        // Then the create comes again (its ack wait passed). Before, it made the workspace again (creating, a clone).
        yield* waitUntil(
          "the create delivered again",
          Effect.gen(function* () {
            const after = (yield* reports.all()).slice((yield* reports.all()).indexOf(deleted) + 1)
            const remade = after.some(
              is("workspace.status-reported", (r) => r.body.workspaceId === workspaceId && r.body.status === "creating")
            )
            return remade || agent.output().includes("not run") ? { remade } : undefined
          }),
          { timeout: "30 seconds" }
        ).pipe(Effect.flatMap(({ remade }) => Effect.sync(() => expect(remade).toBe(false))))
        expect(agent.output()).toMatch(/workspace\.create \S+ was sent before the last stop or delete of ws:/)
        expect(existsSync(join(node.dataDir, "workspaces", ".records", `${workspaceId}.json`))).toBe(false)
      })
  )
})
