import { execFileSync, spawn } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import { chmod, chown, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises"
import { type AddressInfo, createServer, type Socket } from "node:net"
import { dirname, join } from "node:path"
import { Effect, Option } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { keepTaskBranches } from "../src/node/TaskCommit.js"
import { makeHostRuntime, startHostRuntime } from "../src/runtime/HostRuntime.js"
import { makeRecords, newRecord } from "../src/runtime/internal/records.js"
import {
  claimUid,
  DEFAULT_UID_CLAIMS,
  firstCandidateUid,
  killUser,
  releaseUid
} from "../src/runtime/internal/workspaceUser.js"
import {
  type ExecResult,
  RuntimeFailure,
  type WorkspaceRuntimeService,
  WorkspaceSpec
} from "../src/runtime/WorkspaceRuntime.js"
import { collecting, makeRepo, run, runtimeContract, spec, tempDir } from "./runtimeFixtures.js"

/** The processes running as `uid` (its real or effective uid); a zombie runs nothing: it waits to be reaped. */
const runningAs = (uid: number) =>
  readdirSync("/proc").filter((pid) => {
    if (!/^\d+$/.test(pid)) return false
    try {
      const status = readFileSync(`/proc/${pid}/status`, "utf8")
      return new RegExp(`^Uid:\\s+(\\d+\\s+)?${uid}\\s`, "m").test(status) && !/^State:\s+Z/m.test(status)
    } catch {
      return false
    }
  })

describe("host-process runtime", () => {
  let dir = ""
  let repo = ""
  let runtime: WorkspaceRuntimeService
  beforeAll(async () => {
    dir = await tempDir("sam-host-runtime-")
    repo = await makeRepo(join(dir, "repo"))
    runtime = makeHostRuntime({ dataDir: join(dir, "node") })
  })
  afterAll(() => rm(dir, { recursive: true, force: true }))

  const contract = runtimeContract({
    runtime: () => runtime,
    restarted: () => makeHostRuntime({ dataDir: join(dir, "node") }),
    repo: () => repo
  })

  it("keeps each workspace in a directory of the node's data dir, removed on delete", async () => {
    const info = await run(runtime.create(spec("ws_hostdir", `file://${repo}`)))
    expect(info.path).toBe(join(dir, "node", "workspaces", "ws_hostdir", "workspace"))
    expect(Option.isSome(await run(runtime.get("ws_hostdir")))).toBe(true)
    await run(runtime.delete("ws_hostdir"))
    await expect(stat(join(dir, "node", "workspaces", "ws_hostdir"))).rejects.toThrow(/ENOENT/)
  })

  it("a workspace's processes have a temporary directory of their own in its home, its user's alone, not the machine's /tmp", async () => {
    const info = await run(runtime.create(spec("ws_tmp", repo)))
    try {
      const made = await run(runtime.exec("ws_tmp", ["sh", "-c", 'echo "$TMPDIR"; mktemp']))
      const [tmpdir, file] = made.stdout.trim().split("\n")
      const home = join(dir, "node", "workspaces", "ws_tmp", "home")
      expect(tmpdir).toBe(join(home, ".tmp"))
      expect(file?.startsWith(`${join(home, ".tmp")}/`)).toBe(true)
      const own = await stat(join(home, ".tmp"))
      expect(own.mode & 0o777).toBe(0o700)
      // as root, the workspace's own user holds it (and its processes run as that user)
      if (process.getuid?.() === 0) expect(own.uid).toBe((await stat(home)).uid)
      expect(info.status).toBe("running")
      // what a tool puts in the machine's /tmp whatever TMPDIR says goes with the workspace (as root, its user's)
      const stray = join("/tmp", `sam-stray-${Math.random().toString(36).slice(2, 10)}`)
      await run(runtime.exec("ws_tmp", ["sh", "-c", `mkdir ${stray} && touch ${stray}/sock`]))
      await run(runtime.delete("ws_tmp"))
      if (process.getuid?.() === 0) await expect(stat(stray)).rejects.toThrow(/ENOENT/)
      else await rm(stray, { recursive: true, force: true })
    } finally {
      await run(runtime.delete("ws_tmp"))
    }
  })

  it.runIf(process.getuid?.() === 0)(
    "as root: a workspace gone without its delete has its uid freed when a vm-agent starts (its processes, its files in /tmp, its claim), and before its uid is given again; a live workspace's stays",
    async () => {
      // its own claims and its own "/tmp", so that no other test's workspace (of the machine's claims) is touched
      const claims = join(dir, "uids-tmp")
      const machineTmp = join(dir, "machine-tmp")
      await mkdir(machineTmp)
      await chmod(machineTmp, 0o1777)
      const options = { dataDir: join(dir, "node-tmp"), uidClaims: claims, tmpDirs: [machineTmp] }
      const isolated = makeHostRuntime(options)
      await run(isolated.create(spec("ws_live", repo)))
      try {
        const live = (await stat(join(dir, "node-tmp", "workspaces", "ws_live", "home"))).uid
        const leftBy = async (uid: number, name = `left-${uid}`) => {
          const file = join(machineTmp, name)
          await mkdir(file)
          await writeFile(join(file, "sock"), "the last holder's", { mode: 0o600 })
          for (const path of [file, join(file, "sock")]) await chown(path, uid, uid)
          return file
        }
        const other = (n: number) => 200_000 + ((live - 200_000 + n) % 1_000_000)
        // a uid whose workspace went without its delete (its claim names a directory that is gone), one never claimed
        // here (not SAM's to touch), and the live workspace's
        await writeFile(join(claims, String(other(1))), join(dir, "gone-workspace"))
        const gone = await leftBy(other(1))
        // what the uid could not remove itself stays: the removal runs as the uid, not as root
        const guarded = await leftBy(other(1), `guarded-${other(1)}`)
        const rootOwned = join(guarded, "root", "file")
        await mkdir(dirname(rootOwned))
        await writeFile(rootOwned, "root's")
        const foreign = await leftBy(other(2))
        const kept = await leftBy(live)
        // a process of the gone workspace's uid, which no vm-agent lists any more
        const orphan = spawn("sleep", ["300"], { uid: other(1), gid: other(1), stdio: "ignore", detached: true })
        const orphanExit = new Promise((done) => orphan.once("exit", (_code, signal) => done(signal)))
        await new Promise((done) => orphan.once("spawn", done))
        await run(startHostRuntime(options))
        expect(await orphanExit).toBe("SIGKILL")
        await expect(stat(join(claims, String(other(1))))).rejects.toThrow(/ENOENT/)
        expect((await stat(join(claims, String(live)))).isFile()).toBe(true)
        await expect(stat(gone)).rejects.toThrow(/ENOENT/)
        expect(await readFile(rootOwned, "utf8")).toBe("root's")
        await rm(dirname(dirname(rootOwned)), { recursive: true, force: true })
        expect((await stat(foreign)).uid).toBe(other(2))
        expect((await stat(kept)).uid).toBe(live)
        // a uid whose claim is stale, claimed by a new workspace: nothing of the last holder's is left to it
        const owner = join(dir, "node-tmp", "workspaces", "ws_next")
        const next = firstCandidateUid(owner)
        await writeFile(join(claims, String(next)), join(dir, "another-gone-workspace"))
        const lastHolders = await leftBy(next)
        expect(await claimUid(claims, owner, [machineTmp])).toBe(next)
        await expect(stat(lastHolders)).rejects.toThrow(/ENOENT/)
        await releaseUid(claims, next, owner)
        await rm(foreign, { recursive: true, force: true })
        await rm(kept, { recursive: true, force: true })
      } finally {
        await run(isolated.delete("ws_live")).catch(() => undefined)
      }
    }
  )

  it("a clone that goes silent (a server that accepts and never answers) is stopped: the create fails saying so, nothing left running", async () => {
    const sockets: Array<Socket> = []
    const silent = createServer((socket) => void sockets.push(socket))
    await new Promise<void>((done) => silent.listen(0, "127.0.0.1", done))
    const name = `silent-${Math.random().toString(36).slice(2, 10)}.git`
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/${name}`
    const before = process.env.SAM_CLONE_STALL_MS
    process.env.SAM_CLONE_STALL_MS = "1500"
    try {
      const started = Date.now()
      const info = await run(runtime.create(spec("ws_silent", url)))
      expect(info.status).toBe("error")
      expect(info.reason).toMatch(/^clone: git clone wrote nothing for 2 s and was stopped/)
      // before, the create (and every command of its workspace behind it) waited for ever
      expect(Date.now() - started).toBeLessThan(15_000)
      // git and its helper (git-remote-http, which held the connection) are gone
      const left = execFileSync("ps", ["-eo", "args"], { encoding: "utf8" })
        .split("\n")
        .filter((line) => line.includes(name))
      expect(left).toEqual([])
    } finally {
      if (before === undefined) delete process.env.SAM_CLONE_STALL_MS
      else process.env.SAM_CLONE_STALL_MS = before
      for (const socket of sockets) socket.destroy()
      silent.close()
      await run(runtime.delete("ws_silent"))
    }
  })

  it("a local repository's copy, silent until it is done, is not taken for a stalled clone", async () => {
    const before = process.env.SAM_CLONE_STALL_MS
    process.env.SAM_CLONE_STALL_MS = "1"
    try {
      const info = await run(runtime.create(spec("ws_local_quiet", repo)))
      expect(info.status).toBe("running")
    } finally {
      if (before === undefined) delete process.env.SAM_CLONE_STALL_MS
      else process.env.SAM_CLONE_STALL_MS = before
      await run(runtime.delete("ws_local_quiet"))
    }
  })

  it("a clone that outlived the vm-agent which started it (killed mid-create) ends with its workspace's delete", async () => {
    const sockets: Array<Socket> = []
    const silent = createServer((socket) => void sockets.push(socket))
    await new Promise<void>((done) => silent.listen(0, "127.0.0.1", done))
    const name = `orphan-${Math.random().toString(36).slice(2, 10)}.git`
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/${name}`
    const checkout = join(dir, "node", "workspaces", "ws_orphan", "workspace")
    await mkdir(checkout, { recursive: true })
    let orphanPid: number | undefined
    try {
      // as the dead vm-agent left it: git (and git-remote-http, holding the connection) in a group of their own
      const orphan = spawn("git", ["clone", "--", url, checkout], { detached: true, stdio: "ignore" })
      orphan.unref()
      orphanPid = orphan.pid
      const deadline = Date.now() + 10_000
      while (sockets.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      expect(sockets.length).toBe(1)
      await run(runtime.delete("ws_orphan"))
      const left = () =>
        execFileSync("ps", ["-eo", "args"], { encoding: "utf8" })
          .split("\n")
          .filter((line) => line.includes(name))
      const until = Date.now() + 5_000
      while (left().length > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50))
      expect(left()).toEqual([])
    } finally {
      for (const socket of sockets) socket.destroy()
      silent.close()
      if (orphanPid !== undefined) {
        try {
          process.kill(-orphanPid, "SIGKILL")
        } catch {}
      }
    }
  })

  it("a stopping workspace's task branches are kept as a bundle of what its origin lacks, streamed to its file, tried again after a failure that may pass, and a bundle over the limit is not kept", async () => {
    await run(runtime.create(spec("ws_bundle", repo)))
    const sh = (script: string) => run(runtime.exec("ws_bundle", ["sh", "-c", script]))
    const made = await sh(
      "git checkout -q -b sam/task_x && echo work > work.txt && git add work.txt && git -c user.name=t -c user.email=t@t commit -qm work && echo ok"
    )
    expect(made.stdout.trim()).toBe("ok")
    const branchDir = join(dir, "branches")
    try {
      const kept = await run(keepTaskBranches(runtime, "ws_bundle", branchDir))
      expect(kept).toBe(`kept sam/task_x in ${join(branchDir, "ws_bundle.bundle")}`)
      const heads = execFileSync("git", ["bundle", "list-heads", join(branchDir, "ws_bundle.bundle")], {
        encoding: "utf8"
      })
      expect(heads).toMatch(/refs\/heads\/sam\/task_x/)
      // A failure that may pass (here git's process did not start, as when the machine is out of processes) is tried
      // again: the stop that follows is the branches' last chance. One that stays is said, after its attempts.
      let failures = 1
      const cannotFork = () => Effect.fail(new RuntimeFailure({ reason: "spawn", message: "git: spawn EAGAIN" }))
      const flaky: WorkspaceRuntimeService = {
        ...runtime,
        spawn: (id, argv, options) => (failures-- > 0 ? cannotFork() : runtime.spawn(id, argv, options))
      }
      const again = join(dir, "branches-again")
      expect(await run(keepTaskBranches(flaky, "ws_bundle", again))).toBe(
        `kept sam/task_x in ${join(again, "ws_bundle.bundle")}`
      )
      const broken: WorkspaceRuntimeService = { ...runtime, spawn: cannotFork }
      expect(await run(keepTaskBranches(broken, "ws_bundle", join(dir, "branches-never")))).toBe(
        "could not keep its task branches (3 attempts): git: spawn EAGAIN"
      )
      const before = process.env.SAM_BRANCH_BUNDLE_MAX_BYTES
      process.env.SAM_BRANCH_BUNDLE_MAX_BYTES = "100"
      try {
        const over = await run(keepTaskBranches(runtime, "ws_bundle", join(dir, "branches-small")))
        expect(over).toMatch(/^could not keep its task branches: their bundle is over 100 bytes/)
        expect(await readdir(join(dir, "branches-small"))).toEqual([])
      } finally {
        if (before === undefined) delete process.env.SAM_BRANCH_BUNDLE_MAX_BYTES
        else process.env.SAM_BRANCH_BUNDLE_MAX_BYTES = before
      }

      // What its origin has is not kept again (ADR 0060): a branch pushed as it is (a push leaves `origin/<branch>`
      // at its commit, as `update-ref` does here) is left out, and of the others only the commits the origin lacks
      // are in the bundle, which a clone of the origin fetches and nothing else can.
      const pushedToo = await sh(
        "git checkout -q -b sam/task_y main && echo y > y.txt && git add y.txt && git -c user.name=t -c user.email=t@t commit -qm y && git update-ref refs/remotes/origin/sam/task_y sam/task_y && echo ok"
      )
      expect(pushedToo.stdout.trim()).toBe("ok")
      const own = join(dir, "branches-own")
      expect(await run(keepTaskBranches(runtime, "ws_bundle", own))).toBe(
        `kept sam/task_x in ${join(own, "ws_bundle.bundle")} (on its origin: sam/task_y)`
      )
      const bundle = join(own, "ws_bundle.bundle")
      const listed = execFileSync("git", ["bundle", "list-heads", bundle], { encoding: "utf8" })
      expect(listed).toMatch(/refs\/heads\/sam\/task_x/)
      expect(listed).not.toMatch(/task_y/)
      const clone = join(dir, "origin-clone")
      execFileSync("git", ["clone", "-q", repo, clone])
      execFileSync("git", ["fetch", "-q", bundle, "refs/heads/sam/*:refs/heads/sam/*"], { cwd: clone })
      expect(execFileSync("git", ["show", "sam/task_x:work.txt"], { cwd: clone, encoding: "utf8" })).toBe("work\n")
      // the history it needs is the origin's: a repository without it cannot take the bundle
      const stranger = join(dir, "stranger")
      execFileSync("git", ["init", "-q", stranger])
      expect(() => execFileSync("git", ["bundle", "verify", bundle], { cwd: stranger, stdio: "pipe" })).toThrow(
        /lacks these prerequisite commits/
      )
      // all of them on the origin: nothing is kept
      await sh("git update-ref refs/remotes/origin/sam/task_x sam/task_x")
      const none = join(dir, "branches-none")
      expect(await run(keepTaskBranches(runtime, "ws_bundle", none))).toBe(
        "nothing to keep: its task branches are on its origin (sam/task_x, sam/task_y)"
      )
      await expect(readdir(none)).rejects.toThrow(/ENOENT/)
    } finally {
      await run(runtime.delete("ws_bundle"))
    }
  })

  it("concurrent creates of one workspace provision it once", async () => {
    const log = collecting()
    const all = await run(
      Effect.all(
        [1, 2, 3].map(() => runtime.create(spec("ws_race", repo), { onLog: log.onLog })),
        { concurrency: "unbounded" }
      )
    )
    expect(new Set(all.map((i) => JSON.stringify(i))).size).toBe(1)
    expect(log.lines.filter((l) => l.step === "create" && l.status === "started")).toHaveLength(1)
    await run(runtime.delete("ws_race"))
  })

  it("a workspace's record written by two operations at once is never lost or torn", async () => {
    const records = makeRecords(join(dir, "node", "records-race"))
    const record = newRecord(WorkspaceSpec.parse(spec("ws_race", repo)), "host", join(dir, "ws_race"))
    await run(records.write(record))
    const writes = Array.from({ length: 40 }, (_, i) =>
      run(records.update(record, { status: i % 2 === 0 ? "running" : "stopped" }))
    )
    const listed = Array.from({ length: 40 }, () => run(records.list()))
    await Promise.all(writes)
    for (const seen of await Promise.all(listed)) expect(seen.map((r) => r.workspaceId)).toEqual(["ws_race"])
    expect(Option.getOrThrow(await run(records.read("ws_race"))).workspaceId).toBe("ws_race")
  })

  it("a create interrupted by a daemon crash, or a workspace gone from disk, is created anew on the next create", async () => {
    const records = makeRecords(join(dir, "node", "workspaces", ".records"))
    const parsed = WorkspaceSpec.parse(spec("ws_crash", repo))
    await run(records.write(newRecord(parsed, "host", join(dir, "node", "workspaces", "ws_crash", "workspace"))))
    const log = collecting()
    const info = await run(runtime.create(spec("ws_crash", repo), { onLog: log.onLog }))
    expect(info.status, info.reason).toBe("running")
    expect(log.lines[0]?.message).toMatch(/interrupted; starting over/)

    await rm(info.path, { recursive: true, force: true })
    const log2 = collecting()
    const again = await run(runtime.create(spec("ws_crash", repo), { onLog: log2.onLog }))
    expect(again.status).toBe("running")
    expect(log2.lines[0]?.message).toMatch(/gone from the runtime; creating it anew/)
    expect((await run(runtime.exec("ws_crash", ["cat", "README.md"]))).stdout).toBe("hello from the repo\n")
    await run(runtime.delete("ws_crash"))
  })

  it.runIf(process.getuid?.() === 0)(
    "as root: each workspace runs as a uid of its own, sees only its own env, and cannot read another workspace",
    async () => {
      process.env.SAM_VM_AGENT_CANARY = "vm-agent-secret-canary"
      try {
        const a = await run(runtime.create(spec("ws_iso_a", repo)))
        const b = await run(runtime.create(spec("ws_iso_b", repo, { env: [{ name: "B_ONLY", value: "b-secret" }] })))
        const sh = (ws: string, script: string) => run(runtime.exec(ws, ["sh", "-c", script]))
        const uidA = (await sh("ws_iso_a", "id -u")).stdout.trim()
        const uidB = (await sh("ws_iso_b", "id -u")).stdout.trim()
        expect(Number(uidA)).toBeGreaterThanOrEqual(200_000)
        expect(uidB).not.toBe(uidA)
        const env = (await sh("ws_iso_a", "env")).stdout
        expect(env).toContain("GREETING=hi")
        expect(env).not.toMatch(/CANARY|B_ONLY|SAM_NODE|NATS/)
        const peek = await sh("ws_iso_a", `ls ${b.path}; cat ${b.path}/README.md; ls ${join(b.path, "..")}`)
        expect(peek.stdout).toBe("")
        expect(peek.stderr).toMatch(/Permission denied/)
        // the vm-agent's own environment, and its records and the env files of workspaces
        const own = await sh("ws_iso_a", `cat /proc/${process.pid}/environ; ls ${join(a.path, "../..")}`)
        expect(own.stdout).toBe("")
        expect(own.stderr).toMatch(/Permission denied/)
        // The project's repository is the node's, not the workspace's: its objects were copied, not
        // hard-linked (a link's chown to the workspace's uid would hand the agent the source's files).
        const objects = execFileSync("find", [join(repo, ".git", "objects"), "-type", "f"], { encoding: "utf8" })
          .split("\n")
          .filter(Boolean)
        expect(objects.length).toBeGreaterThan(0)
        for (const object of objects) expect((await stat(object)).uid, object).toBe(0)
        const written = await sh(
          "ws_iso_a",
          `chmod u+w .git/objects/*/* && echo x >> "$(ls .git/objects/*/* | head -1)"`
        )
        expect(written.exitCode, written.stderr).toBe(0)
        expect(execFileSync("git", ["fsck", "--strict"], { cwd: repo, encoding: "utf8" })).toBe("")
        await run(runtime.delete("ws_iso_a"))
        await run(runtime.delete("ws_iso_b"))
      } finally {
        delete process.env.SAM_VM_AGENT_CANARY
      }
    }
  )

  it.runIf(process.getuid?.() === 0)(
    "as root: what runs while the repository is cloned (ADR 0037) runs as the workspace's own uid, and cannot read its env file",
    async () => {
      let during: ExecResult | undefined
      const info = await run(
        runtime.create(spec("ws_early_uid", repo), {
          onSpawnable: runtime.exec("ws_early_uid", ["sh", "-c", "id -u; cat ../.sam-env.json 2>&1; true"]).pipe(
            Effect.tap((result) => {
              during = result
            }),
            Effect.orDie
          )
        })
      )
      expect(info.status, info.reason).toBe("running")
      const [uid, envFile] = during!.stdout.trim().split("\n")
      expect(Number(uid)).toBeGreaterThanOrEqual(200_000)
      expect(envFile).toMatch(/Permission denied/)
      expect((await run(runtime.exec("ws_early_uid", ["id", "-u"]))).stdout).toBe(`${uid}\n`)
      await run(runtime.delete("ws_early_uid"))
    }
  )

  it.runIf(process.getuid?.() === 0)(
    "as root: a create that fails leaves no process of its uid, gives the uid back and removes its directory",
    async () => {
      const notGit = await tempDir("sam-not-git-")
      let uid = -1
      const info = await run(
        runtime.create(spec("ws_failed_uid", notGit), {
          // what the agent started while the repository was cloned, one of its processes out of its group
          onSpawnable: runtime
            .exec("ws_failed_uid", ["sh", "-c", "id -u; setsid sleep 61 </dev/null >/dev/null 2>&1 &"])
            .pipe(
              Effect.tap((result) => {
                uid = Number(result.stdout.trim())
              }),
              Effect.orDie
            )
        })
      )
      expect(info.status).toBe("error")
      expect(info.reason).toMatch(/^clone: /)
      expect(uid).toBeGreaterThanOrEqual(200_000)
      expect(runningAs(uid)).toEqual([])
      await expect(readFile(join(DEFAULT_UID_CLAIMS, String(uid)), "utf8")).rejects.toThrow(/ENOENT/)
      await expect(stat(join(dir, "node", "workspaces", "ws_failed_uid"))).rejects.toThrow(/ENOENT/)
      await run(runtime.delete("ws_failed_uid"))
      await rm(notGit, { recursive: true, force: true })
    }
  )

  it.runIf(process.getuid?.() === 0)(
    "as root: ending a workspace's processes (a vm-agent started again), or deleting it, spares a uid its record names but another workspace holds now",
    async () => {
      const owner = await run(runtime.create(spec("ws_uid_owner", repo)))
      expect(owner.status).toBe("running")
      const sh = (script: string) => run(runtime.exec("ws_uid_owner", ["sh", "-c", script]))
      const uid = Number((await sh("id -u")).stdout.trim())
      // a record a delete cut short left behind (its directory removed, its uid freed and claimed again since)
      const records = makeRecords(join(dir, "node", "workspaces", ".records"))
      const ghost = newRecord(WorkspaceSpec.parse(spec("ws_uid_ghost", repo)), "host", join(dir, "nowhere"))
      await run(records.write({ ...ghost, status: "running", uid, gid: uid }))
      const marker = `sleep 29.${Math.floor(1000 + Math.random() * 8999)}`
      const running = () =>
        execFileSync("ps", ["-eo", "args"], { encoding: "utf8" })
          .split("\n")
          .filter((line) => line.trim() === marker).length
      const until = async (n: number) => {
        const deadline = Date.now() + 10_000
        while (running() !== n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
        return running()
      }
      try {
        await sh(`setsid ${marker} < /dev/null > /dev/null 2>&1 &`)
        expect(await until(1)).toBe(1)
        const restarted = makeHostRuntime({ dataDir: join(dir, "node") })
        await run(restarted.endProcesses("ws_uid_ghost"))
        await run(restarted.delete("ws_uid_ghost"))
        // nothing to wait for: what would have killed it ran to its end
        expect(running()).toBe(1)
        await run(restarted.endProcesses("ws_uid_owner"))
        expect(await until(0)).toBe(0)
      } finally {
        await run(records.remove("ws_uid_ghost"))
        await run(runtime.delete("ws_uid_owner"))
      }
    }
  )

  it.runIf(process.getuid?.() === 0)(
    "as root: every entry of the checkout is its user's, deepest first, and a link the repository holds is changed, never what it points to",
    async () => {
      const outsideFile = join(dir, "owned-outside-file")
      const outsideDir = join(dir, "owned-outside-dir")
      await writeFile(outsideFile, "root's")
      await mkdir(outsideDir, { recursive: true })
      const linked = join(dir, "linked-repo")
      await makeRepo(linked)
      execFileSync(
        "sh",
        [
          "-c",
          `ln -s ${outsideFile} file-link && ln -s ${outsideDir} dir-link && mkdir -p a/b/c && echo deep > a/b/c/f && ` +
            "git add . && git -c user.name=t -c user.email=t@t commit -qm links"
        ],
        { cwd: linked }
      )
      const info = await run(runtime.create(spec("ws_owned_tree", linked)))
      expect(info.status).toBe("running")
      const uid = Number((await run(runtime.exec("ws_owned_tree", ["id", "-u"]))).stdout.trim())
      expect(uid).toBeGreaterThanOrEqual(200_000)
      // find's -uid looks at each entry itself, links included (it follows none without -L)
      const notTheirs = execFileSync("find", [info.path, "!", "-uid", String(uid)], { encoding: "utf8" })
      expect(notTheirs).toBe("")
      expect(execFileSync("find", [info.path, "-type", "f"], { encoding: "utf8" })).toContain("a/b/c/f")
      for (const outside of [outsideFile, outsideDir]) expect((await stat(outside)).uid, outside).toBe(0)
      await run(runtime.delete("ws_owned_tree"))
    }
  )

  it.runIf(process.getuid?.() === 0)(
    "as root: killing a uid's processes leaves none, also a chain of processes each forking the next and ending",
    async () => {
      for (let round = 0; round < 3; round++) {
        const uid = 290_000 + Math.floor(Math.random() * 9_000)
        expect(runningAs(uid)).toEqual([])
        // Each link forks the next and ends: by the time a look in /proc has found one, it has gone and the next runs.
        const chain = spawn("sh", ["-c", "f() { (f &); }; f; exec sleep 61"], {
          uid,
          gid: uid,
          stdio: "ignore",
          detached: true
        })
        chain.unref()
        const until = Date.now() + 5_000
        while (runningAs(uid).length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 5))
        killUser(uid)
        // A look can miss a link that runs for a moment: ten looks over 300 ms, once a link forked as the kill came
        // has had time to run. What a look saw counts if it still runs after them (on a busy machine a killed process
        // can still be seen, not yet scheduled to die).
        await new Promise((r) => setTimeout(r, 100))
        const seen = new Set<string>()
        for (let look = 0; look < 10; look++) {
          for (const pid of runningAs(uid)) seen.add(pid)
          await new Promise((r) => setTimeout(r, 30))
        }
        await new Promise((r) => setTimeout(r, 200))
        const now = runningAs(uid)
        const left = [...new Set([...[...seen].filter((pid) => now.includes(pid)), ...now])]
        if (left.length > 0) spawn("kill", ["-s", "KILL", "--", "-1"], { uid, gid: uid, stdio: "ignore" })
        expect(left).toEqual([])
      }
    }
  )

  it("never writes a runtime file through a symlink the repository holds", async () => {
    const outside = join(dir, "outside")
    const evil = join(dir, "evil-repo")
    await mkdir(outside, { recursive: true })
    await makeRepo(evil)
    execFileSync(
      "sh",
      ["-c", `ln -s ${outside} .sam && git add .sam && git -c user.name=t -c user.email=t@t commit -qm link`],
      {
        cwd: evil
      }
    )
    const info = await run(runtime.create(spec("ws_symlink", evil)))
    expect(info.status).toBe("error")
    expect(info.reason).toMatch(/leads out of the workspace/)
    await expect(stat(join(outside, "config.json"))).rejects.toThrow(/ENOENT/)
    await run(runtime.delete("ws_symlink"))
    // nor makes a directory through it, on the way to a file deeper down
    const deeper = await run(
      runtime.create(spec("ws_symlink_dir", evil, { files: [{ path: ".sam/made/by/root/x.json", content: "{}" }] }))
    )
    expect(deeper.status).toBe("error")
    expect(deeper.reason).toMatch(/leads out of the workspace/)
    await expect(stat(join(outside, "made"))).rejects.toThrow(/ENOENT/)
    await run(runtime.delete("ws_symlink_dir"))
  })

  contract.lifecycleTests()
})
