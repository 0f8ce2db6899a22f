import { spawn } from "node:child_process"
import { readFileSync, readlinkSync } from "node:fs"
import { mkdir, readdir, readFile, rm, stat } from "node:fs/promises"
import { join } from "node:path"
import { Deferred, Effect, Exit, Scope } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { processes } from "../../test/src/ProcessTree.js"
import { type AcpSession, AcpSessionHost } from "../src/acp/AcpSessionHost.js"
import type { SessionEvent } from "../src/acp/SessionEvent.js"
import { workspaceSpawner } from "../src/acp/WorkspaceAgent.js"
import { demoAgentCommand } from "../src/demo/DemoAgentCommand.js"
import { makeHostRuntime, startHostRuntime } from "../src/runtime/HostRuntime.js"
import { claimUid } from "../src/runtime/internal/workspaceUser.js"
import type { WorkspaceRuntimeService } from "../src/runtime/WorkspaceRuntime.js"
import { textOf, toolOutputOf } from "./acpTestKit.js"
import { makeRepo, run, spec, tempDir } from "./runtimeFixtures.js"

/** Processes (not zombies) whose real uid is `uid`. */
const pidsOf = (uid: number) =>
  processes()
    .filter((p) => p.uid === uid && !p.zombie)
    .map((p) => p.pid)

/** Whether process `pid` left `/` for where its start line sent it, or ended. */
const startTaken = (pid: number) => {
  try {
    return readlinkSync(`/proc/${pid}/cwd`) !== "/" ? true : undefined
  } catch {
    return true
  }
}

const until = async <A>(what: string, probe: () => Promise<A | undefined> | A | undefined, timeoutMs = 15_000) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const found = await probe()
    if (found !== undefined) return found
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

/**
 * The warm agent (ADR 0055): the demo agent booted by the host runtime before any workspace asks for it, as a uid
 * claimed for it, and taken by the next workspace made. Root only: a warm agent's uid is what keeps it apart.
 */
describe.skipIf(process.getuid?.() !== 0)("the host runtime's warm agent", () => {
  const dirs = (async () => {
    const dir = await tempDir("sam-warm-")
    return { dir, repo: await makeRepo(join(dir, "repo")), claims: join(dir, "uids"), tmp: join(dir, "tmp") }
  })()
  afterAll(async () => rm((await dirs).dir, { recursive: true, force: true }))
  const argv = demoAgentCommand({ cwd: "/" }).argv

  /** A runtime of its own, keeping the demo agent warm until `close`. */
  const warmRuntime = async (name: string) => {
    const { dir, claims, tmp } = await dirs
    await mkdir(tmp, { recursive: true })
    const dataDir = join(dir, name)
    const runtime = makeHostRuntime({ dataDir, uidClaims: claims, tmpDirs: [tmp], warmKeptMs: 300 })
    const scope = Effect.runSync(Scope.make())
    await run(runtime.keepWarm!(argv).pipe(Scope.extend(scope)))
    const warmDir = join(dataDir, "workspaces", ".warm")
    /** the warm agent waiting now: its uid (claimed by a directory under `.warm/`) and its one process */
    const warm = () =>
      until("a warm agent", async () => {
        for (const name of await readdir(claims).catch(() => [] as Array<string>)) {
          const holder = await readFile(join(claims, name), "utf8").catch(() => "")
          if (!holder.startsWith(`${warmDir}/`)) continue
          const pids = pidsOf(Number(name))
          if (pids.length === 1) return { uid: Number(name), pid: pids[0]!, holder }
        }
        return undefined
      })
    return { runtime, scope, dataDir, warmDir, warm, close: () => run(Scope.close(scope, Exit.void)) }
  }

  it("the next workspace's agent is the one booted ahead: it runs in the checkout, as the workspace's user, with the environment a start there would have", async () => {
    const { repo } = await dirs
    const { runtime, warm, close, dataDir } = await warmRuntime("node-take")
    try {
      const before = await warm()
      const ws = "ws_warm_take"
      const events: Array<SessionEvent> = []
      const spawned = Effect.runSync(Deferred.make<void>())
      // the vm-agent starts a session's agent while its workspace is still made (ADR 0037): so does this test
      const spied: WorkspaceRuntimeService = {
        ...runtime,
        spawn: (id, command, options) =>
          runtime.spawn(id, command, options).pipe(Effect.tap(() => Deferred.succeed(spawned, undefined)))
      }
      const sessionScope = Effect.runSync(Scope.make())
      const session = Effect.runSync(Deferred.make<AcpSession>())
      const home = join(dataDir, "workspaces", ws, "home")
      const start = Effect.gen(function* () {
        const host = yield* AcpSessionHost
        return yield* host.start({
          command: demoAgentCommand({
            cwd: join(dataDir, "workspaces", ws, "workspace"),
            env: { SAM_DEMO_AGENT_STATE_DIR: join(home, ".sam", "agents", "s1") }
          }),
          spawn: workspaceSpawner(spied, ws),
          onEvent: (event) => void events.push(event)
        })
      }).pipe(
        Effect.provide(AcpSessionHost.Default),
        Scope.extend(sessionScope),
        Effect.flatMap((s) => Deferred.succeed(session, s)),
        Effect.forkDaemon
      )
      // as a node's vm-agent runs (its unit's umask 077): what the create makes is no one else's to enter, but the
      // warm agent enters the checkout as the workspace's user, where a fresh spawn's chdir ran as root
      const umask = process.umask(0o077)
      const info = await run(
        runtime.create(spec(ws, repo), {
          // the agent has taken its start line (or died of it) before the checkout is handed to its user
          onSpawnable: start.pipe(
            Effect.zipRight(Deferred.await(spawned)),
            Effect.zipRight(Effect.promise(() => until("the warm agent's start taken", () => startTaken(before.pid))))
          )
        })
      ).finally(() => process.umask(umask))
      expect(info.status).toBe("running")
      // the workspace's user is the warm agent's uid: its home is that uid's
      expect((await stat(home)).uid).toBe(before.uid)
      const acp = await run(Deferred.await(session))
      try {
        // the same process, started before the workspace existed
        expect(acp.pgid()).toBe(before.pid)
        const started = events.find((e) => e.type === "agent-started")
        expect(started?.type === "agent-started" && started.pid).toBe(before.pid)
        await run(acp.prompt('run pwd; id -u; echo "[$HOME|$TMPDIR|$GREETING|$SAM_WARM_START]"'))
        const output = toolOutputOf(events)
        expect(output).toContain(info.path)
        expect(output).toContain(String(before.uid))
        expect(output).toContain(`[${info.home}|${join(info.home, ".tmp")}|hi|]`)
        await run(acp.prompt("say warm and ready"))
        expect(textOf(events)).toContain("warm and ready")
      } finally {
        await run(Scope.close(sessionScope, Exit.void))
      }
      // the next one boots once the create has ended: another uid, another process
      const next = await warm()
      expect(next.uid).not.toBe(before.uid)
      expect(next.pid).not.toBe(before.pid)
      await run(runtime.delete(ws))
      await until("the workspace's processes ended", () => (pidsOf(before.uid).length === 0 ? true : undefined))
    } finally {
      await close()
    }
  })

  it("a warm agent no spawn of its command asked for soon after its workspace's create is ended; its uid stays the workspace's until the delete", async () => {
    const { repo, claims } = await dirs
    const { runtime, warm, close, dataDir } = await warmRuntime("node-unused")
    try {
      const before = await warm()
      const ws = "ws_warm_unused"
      // a workspace whose env says it is warm: no process it starts takes that for its start
      const info = await run(
        runtime.create(spec(ws, repo, { env: [{ name: "SAM_WARM_START", value: "1" }], files: [] }))
      )
      expect(info.status).toBe("running")
      expect(await readFile(join(claims, String(before.uid)), "utf8")).toBe(join(dataDir, "workspaces", ws))
      // another command is an ordinary process, as the workspace's user; the warm one waits for its own
      const ran = await run(runtime.exec(ws, ["sh", "-c", 'id -u; echo "[$SAM_WARM_START]"']))
      expect(ran.stdout.trim().split("\n")).toEqual([String(before.uid), "[]"])
      // the warm one ends when no spawn of its command took it in time
      await until("the untaken warm agent ended", () => (pidsOf(before.uid).length === 0 ? true : undefined))
      await run(runtime.delete(ws))
      await expect(stat(join(claims, String(before.uid)))).rejects.toThrow(/ENOENT/)
      await warm()
    } finally {
      await close()
    }
  })

  it("a spawn whose environment a booted process could not take on (Node's own variables) starts afresh, and the warm agent ends", async () => {
    const { repo } = await dirs
    const { runtime, warm, close } = await warmRuntime("node-node-options")
    try {
      const before = await warm()
      const ws = "ws_warm_node_options"
      let pgid = 0
      const info = await run(
        runtime.create(spec(ws, repo, { env: [{ name: "NODE_OPTIONS", value: "--max-old-space-size=200" }] }), {
          onSpawnable: Effect.scoped(
            runtime.spawn(ws, argv).pipe(
              Effect.flatMap((proc) => proc.pgid),
              Effect.tap((spawned) =>
                Effect.sync(() => {
                  pgid = spawned
                })
              ),
              Effect.orDie
            )
          )
        })
      )
      expect(info.status).toBe("running")
      expect(pgid).toBeGreaterThan(0)
      expect(pgid).not.toBe(before.pid)
      await until("the warm agent ended", () => (pidsOf(before.uid).length === 0 ? true : undefined))
      await run(runtime.delete(ws))
    } finally {
      await close()
    }
  })

  it("a waiting warm agent holds nothing of anyone's, and its temporary directory is one no workspace can reach or plant in", async () => {
    const { warm, close, warmDir } = await warmRuntime("node-waiting")
    try {
      const waiting = await warm()
      const env = Object.fromEntries(
        readFileSync(`/proc/${waiting.pid}/environ`, "utf8")
          .split("\0")
          .filter((entry) => entry !== "")
          .map((entry) => [entry.slice(0, entry.indexOf("=")), entry.slice(entry.indexOf("=") + 1)])
      )
      expect(Object.keys(env).sort()).toEqual(["HOME", "LANG", "PATH", "SAM_WARM_START", "TEMP", "TMP", "TMPDIR"])
      expect(env.HOME).toBe("/")
      expect(env.TMPDIR).toBe(waiting.holder)
      expect(waiting.holder.startsWith(`${warmDir}/`)).toBe(true)
      // root's alone, as is `.warm/` above it: neither the warm agent's uid nor any workspace's may enter, list or write
      for (const dir of [warmDir, waiting.holder]) {
        const owned = await stat(dir)
        expect(owned.uid).toBe(0)
        expect(owned.mode & 0o077).toBe(0)
      }
      expect(readlinkSync(`/proc/${waiting.pid}/cwd`)).toBe("/")
    } finally {
      await close()
    }
  })

  it("a warm agent that ends before a workspace takes it is replaced; the scope's end ends the last one, its uid and directory", async () => {
    const { claims } = await dirs
    const { warm, close, warmDir } = await warmRuntime("node-replace")
    const first = await warm()
    process.kill(first.pid, "SIGKILL")
    await until("the first one ended", () => (pidsOf(first.uid).length === 0 ? true : undefined))
    const second = await warm()
    expect(second.pid).not.toBe(first.pid)
    await until("the first one's claim released", async () =>
      (await stat(join(claims, String(first.uid))).catch(() => undefined)) === undefined ? true : undefined
    )
    await close()
    await until("the last one ended", () => (pidsOf(second.uid).length === 0 ? true : undefined))
    await expect(stat(join(claims, String(second.uid)))).rejects.toThrow(/ENOENT/)
    expect(await readdir(warmDir)).toEqual([])
  })

  it("a vm-agent that starts again ends what a warm agent of its last run left, and frees its uid", async () => {
    const { dir, claims, tmp } = await dirs
    const dataDir = join(dir, "node-restart")
    // a warm agent's uid and directory as a vm-agent killed without its finalizers left them, with a process
    const holder = join(dataDir, "workspaces", ".warm", "left")
    await mkdir(holder, { recursive: true })
    const uid = await claimUid(claims, holder, [tmp])
    const left = spawn("sleep", ["60"], { uid, gid: uid, detached: true, stdio: "ignore" })
    await until("its process", () => (pidsOf(uid).length === 1 ? true : undefined))
    await run(startHostRuntime({ dataDir, uidClaims: claims, tmpDirs: [tmp] }))
    await until("its process ended", () => (pidsOf(uid).length === 0 ? true : undefined))
    expect(left.pid).toBeDefined()
    await expect(stat(holder)).rejects.toThrow(/ENOENT/)
    await expect(stat(join(claims, String(uid)))).rejects.toThrow(/ENOENT/)
  })
})
