import { type ChildProcess, type ChildProcessByStdio, spawn as spawnChild } from "node:child_process"
import { randomBytes } from "node:crypto"
import { constants } from "node:fs"
import { chmod, chown, lstat, mkdir, open, readFile, realpath, rm, stat, writeFile } from "node:fs/promises"
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path"
import type { Readable, Writable } from "node:stream"
import { Effect, Layer, Queue, Redacted } from "effect"
import { baseEnv } from "./internal/agentEnv.js"
import { type BootLog, lineSplitter } from "./internal/bootLog.js"
import { gitEnv, HELPER_SCRIPT, remoteOf } from "./internal/gitHelper.js"
import { makeLifecycle, ProvisionError, type Provisioner } from "./internal/lifecycle.js"
import { groupAlive, killWithArgument, signalGroup, signalStartedSince, startedSince } from "./internal/processGroup.js"
import { makeRecords, type WorkspaceRecord } from "./internal/records.js"
import { localPath, localRepository } from "./internal/repository.js"
import { cloneStallMs, stalled } from "./internal/stall.js"
import { MAX_WARM_START_BYTES, WARM_START_ENV, type WarmStart } from "./internal/warmStart.js"
import {
  canIsolate,
  claimUid,
  DEFAULT_UID_CLAIMS,
  ensureTraversable,
  holdsUid,
  killUser,
  machineTmpDirs,
  ownTree,
  reclaimStaleUids,
  releaseUid,
  removeTmpFilesOf,
  transferUid
} from "./internal/workspaceUser.js"
import {
  inCheckout,
  RuntimeFailure,
  type WorkspaceProcess,
  WorkspaceRuntime,
  type WorkspaceRuntimeService,
  type WorkspaceSpec
} from "./WorkspaceRuntime.js"

export interface HostRuntimeOptions {
  /** the node's data directory: workspaces live in `<dataDir>/workspaces/<id>/` */
  readonly dataDir: string
  /**
   * Give each workspace a uid of its own (ADR 0014); default: when the vm-agent is root, the only case where it can.
   * Without it agents run as the vm-agent and can read what it can.
   */
  readonly isolate?: boolean
  /** where uids are claimed, machine-wide (default /var/lib/sam/workspace-uids) */
  readonly uidClaims?: string
  /** the machine's temporary directories, whose files a workspace's uid leaves are removed (default /tmp, TMPDIR) */
  readonly tmpDirs?: ReadonlyArray<string>
  /** how long after its workspace's create a warm process (ADR 0055) waits for a spawn to take it (default 5 s) */
  readonly warmKeptMs?: number
}

/** Said once when the host runtime starts without root: agents then run as the vm-agent. */
export const NOT_ISOLATED_WARNING =
  "host runtime: the vm-agent is not root, so agents run as its own user and can read whatever it can " +
  "(its credentials, other workspaces); run it as root, or use the Docker runtime, to isolate them"

/** No credential helper but SAM's: the list git builds from every config it reads is emptied first. */
const noCredentialHelper = ["-c", "credential.helper="]

/**
 * The vm-agent's own clone gets the token from its environment (the clone's process only) through an inline
 * helper: the URL stays clean and nothing is written down.
 */
const cloneCredentialArgs = [
  ...noCredentialHelper,
  "-c",
  'credential.helper=!f() { test "$1" = get && printf "username=%s\\npassword=%s\\n" "$SAM_GIT_USERNAME" "$SAM_GIT_PASSWORD"; }; f'
]

/** Said with a clone of a remote repository that failed without a SAM token. */
const NO_MACHINE_CREDENTIALS =
  "cloned without credentials: the node's own git and SSH credentials are never used; SAM reaches a private " +
  "repository only with a token it issues for the task's submitter (ADR 0028, 0048)"

/** How long after a create (or a warm process's death) the next warm process boots (ADR 0055). */
const REFILL_DELAY_MS = 1000
/** How long after its workspace's create a warm process no spawn took is kept for one (ADR 0055). */
const WARM_KEPT_MS = 5000
/** Warm processes in a row that ended (or never started) before a workspace took them: then none is kept. */
const MAX_WARM_FAILURES = 5
const GAVE_UP_WARM = `host runtime: ${MAX_WARM_FAILURES} warm agents in a row ended before a workspace took them; agents start with their sessions from now on`

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 }

const io = <A>(step: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (cause) => new ProvisionError({ step, message: String(cause) }) })

/**
 * Runs a command of the vm-agent's own (the clone) to completion, its output going to the boot log; fails with the
 * last lines. It runs as the vm-agent, with `env` as its whole environment (`gitEnv`: nothing of the vm-agent's
 * credentials); never use it for anything a workspace controls.
 */
export const runLogged = (
  step: string,
  argv: ReadonlyArray<string>,
  cwd: string,
  log: BootLog,
  env: Readonly<Record<string, string>>,
  /** stop it, failing, once it wrote nothing for this long (a clone: `cloneStallMs`) */
  stallMs?: number
) =>
  Effect.async<void, ProvisionError>((resume) => {
    const [command = "", ...args] = argv
    // a group of its own: git's helpers (git-remote-http holding the connection) end with it
    const child = spawnChild(command, args, {
      cwd,
      stdio: ["ignore", "pipe", "pipe"],
      env,
      detached: true
    })
    const killGroup = () => {
      if (child.pid === undefined) return
      try {
        process.kill(-child.pid, "SIGKILL")
      } catch {}
    }
    // the first of the exit, a spawn error and the silence decides
    let settled = false
    let timer: ReturnType<typeof setTimeout> | undefined
    const settle = (outcome: Effect.Effect<void, ProvisionError>) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resume(outcome)
    }
    const arm = () => {
      if (stallMs === undefined) return
      clearTimeout(timer)
      timer = setTimeout(() => {
        killGroup()
        settle(Effect.fail(new ProvisionError({ step, message: stalled(`${command} ${step}`, stallMs) })))
      }, stallMs)
    }
    arm()
    const tail: Array<string> = []
    const lines = lineSplitter((line) => {
      tail.push(line)
      if (tail.length > 6) tail.shift()
      Effect.runFork(log(step, "info", line))
    })
    child.stdout.on("data", lines.push)
    child.stderr.on("data", lines.push)
    child.stdout.on("data", arm)
    child.stderr.on("data", arm)
    child.on("error", (e) => settle(Effect.fail(new ProvisionError({ step, message: `${command}: ${e.message}` }))))
    child.on("close", (code) => {
      lines.flush()
      settle(
        code === 0
          ? Effect.void
          : Effect.fail(new ProvisionError({ step, message: `${command} exited with ${code}: ${tail.join(" | ")}` }))
      )
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      killGroup()
    })
  })

export const makeHostRuntime = (options: HostRuntimeOptions): WorkspaceRuntimeService => {
  const root = resolve(options.dataDir, "workspaces")
  const records = makeRecords(join(root, ".records"))
  const isolate = options.isolate ?? canIsolate()
  const uidClaims = options.uidClaims ?? DEFAULT_UID_CLAIMS
  const tmpDirs = options.tmpDirs ?? machineTmpDirs()
  const dirOf = (id: string) => join(root, id)
  const checkout = (id: string) => join(dirOf(id), "workspace")
  const home = (id: string) => join(dirOf(id), "home")
  const envFile = (id: string) => join(dirOf(id), ".sam-env.json")
  const gitSocket = (id: string) => join(dirOf(id), "git.sock")
  /**
   * The workspace's temporary directory, `~/.tmp` (0700, its user's), made on first use: what its processes write to
   * `TMPDIR` stays theirs and goes with the workspace. In the machine's /tmp, shared by every workspace of a host
   * node, it outlived them and was open to the others: Gemini CLI writes a failed request there, the conversation
   * with it, readable by all (mode 0644); Claude Code its own directory. What a tool still puts in /tmp goes when the
   * workspace is deleted (`removeTmpFilesOf`).
   */
  const privateTmp = (id: string, uid: number | undefined, gid: number | undefined) =>
    Effect.tryPromise({
      try: async () => {
        const dir = join(home(id), ".tmp")
        const made = await mkdir(dir, { mode: 0o700 }).then(
          () => true,
          (e: NodeJS.ErrnoException) => {
            if (e.code !== "EEXIST") throw e
            return false
          }
        )
        if (made && uid !== undefined) {
          // through a handle on the directory itself: the home is the user's, who may swap the name for a link or
          // another file (a hard link to root's) between the mkdir and the chown
          const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW)
          try {
            await handle.chown(uid, gid ?? uid)
          } finally {
            await handle.close()
          }
        }
        return dir
      },
      catch: (cause) => new RuntimeFailure({ reason: "io", message: `cannot make the workspace's tmp: ${cause}` })
    })
  const processes = new Map<string, Set<ChildProcess>>()
  const track = (id: string, child: ChildProcess, exit: Promise<number>) => {
    const set = processes.get(id) ?? new Set()
    processes.set(id, set.add(child))
    void exit.then(() => set.delete(child))
  }

  /**
   * The warm process (ADR 0055): `keepWarm`'s command booted ahead as a uid claimed for it (held by a directory
   * under `workspaces/.warm/`), waiting for its start line. The next workspace made takes it: its uid becomes the
   * workspace's, and the first spawn there of the same argv gets that process. One no spawn asked for within
   * `warmKeptMs` of its workspace's create's end is ended; the next one boots a second after a create ends.
   */
  interface Warm {
    readonly argv: ReadonlyArray<string>
    readonly child: ChildProcessByStdio<Writable, Readable, Readable>
    readonly exit: Promise<number>
    readonly holder: string
    readonly uid: number | undefined
    /** the environment it was started with */
    readonly env: Readonly<Record<string, string>>
  }
  const warmRoot = join(root, ".warm")
  const warmKeptMs = options.warmKeptMs ?? WARM_KEPT_MS
  let warming: { readonly argv: ReadonlyArray<string>; readonly wake: Queue.Queue<void> } | undefined
  let spare: Warm | undefined
  /** taken by a workspace, not yet spawned */
  const taken = new Map<string, Warm>()
  /** starts in a row that ended before a workspace took them: after a few, warming stops */
  let failures = 0
  /** the next warm process boots in a second (if this runtime still keeps one then) */
  const refillLater = () => {
    const wake = warming?.wake
    if (wake !== undefined)
      setTimeout(() => warming?.wake === wake && Queue.unsafeOffer(wake, undefined), REFILL_DELAY_MS).unref()
  }
  const runs = (child: ChildProcess) => child.exitCode === null && child.signalCode === null
  const exitOf = (child: ChildProcess) =>
    new Promise<number>((done) => {
      child.once("error", () => done(127))
      child.once("exit", (code, signal) => done(code ?? 128 + (SIGNALS[signal ?? ""] ?? 0)))
    })
  /**
   * Ends a warm process and gives back what it held: its uid's processes and /tmp entries, the uid's claim (held by
   * any of `holders`), its directory. Never fails: what it could not remove, a vm-agent's next start frees.
   */
  const endWarm = async (
    warm: { readonly child?: ChildProcess | undefined; readonly uid?: number | undefined; readonly holder: string },
    holders: ReadonlyArray<string> = [warm.holder]
  ) => {
    if (warm.child?.pid !== undefined) signalGroup(warm.child.pid, "SIGKILL")
    if (warm.uid !== undefined) {
      killUser(warm.uid)
      await removeTmpFilesOf(warm.uid, tmpDirs).catch(() => undefined)
      for (const holder of holders) await releaseUid(uidClaims, warm.uid, holder).catch(() => undefined)
    }
    await rm(warm.holder, { recursive: true, force: true }).catch(() => undefined)
  }
  const startWarm = async (argv: ReadonlyArray<string>): Promise<Warm> => {
    const holder = join(warmRoot, randomBytes(8).toString("hex"))
    let uid: number | undefined
    let child: Warm["child"] | undefined
    try {
      await mkdir(holder, { recursive: true, mode: 0o700 })
      uid = isolate ? await claimUid(uidClaims, holder, tmpDirs) : undefined
      // Nothing of a workspace yet: the system's PATH, `/` until its start line says where it runs, and as its
      // temporary directory one it cannot reach (root's), so that nothing in the machine's /tmp, which every
      // workspace can write, is read or written before it has a workspace.
      const env = { ...baseEnv("/"), TMPDIR: holder, TMP: holder, TEMP: holder, [WARM_START_ENV]: "1" }
      const [command = "", ...args] = argv
      const started = spawnChild(command, args, {
        cwd: "/",
        detached: true,
        stdio: ["pipe", "pipe", "pipe"],
        ...(uid === undefined ? {} : { uid, gid: uid }),
        env
      })
      child = started
      const exit = exitOf(started)
      await new Promise<void>((spawned, failed) => {
        started.once("spawn", spawned)
        started.once("error", failed)
      })
      started.stdin.on("error", () => {})
      return { argv, child: started, exit, holder, uid, env }
    } catch (error) {
      await endWarm({ child, uid, holder })
      throw error
    }
  }
  /**
   * The warm process for workspace `id`, whose directory exists: its uid's claim is handed to the workspace. Never
   * fails the create: a warm process that cannot be handed over is ended, and the workspace claims a uid as before.
   */
  const takeWarm = (id: string) =>
    Effect.promise(async () => {
      const warm = spare
      if (warm === undefined || !runs(warm.child)) return undefined
      spare = undefined
      try {
        if (warm.uid !== undefined && !(await transferUid(uidClaims, warm.uid, warm.holder, dirOf(id))))
          throw new Error("its uid's claim is not its own")
        await rm(warm.holder, { recursive: true, force: true })
      } catch {
        await endWarm(warm, [warm.holder, dirOf(id)])
        return undefined
      }
      failures = 0
      taken.set(id, warm)
      track(id, warm.child, warm.exit)
      return warm
    })
  /**
   * At the end of `id`'s create: its warm process, if no spawn took it within `warmKeptMs` (a session that starts
   * just after its workspace), ends; the next one boots a second later, not while the session that took this one
   * starts (its boot would take a core from that session's first output).
   */
  const settleWarm = (id: string) =>
    Effect.sync(() => {
      const warm = taken.get(id)
      if (warm !== undefined)
        setTimeout(() => {
          if (taken.get(id) !== warm) return
          taken.delete(id)
          if (warm.child.pid !== undefined) signalGroup(warm.child.pid, "SIGKILL")
        }, warmKeptMs).unref()
      refillLater()
    })
  /**
   * The process a spawn of `argv` with `env` in workspace `id` (as `uid`) would start, if a warm one taken by the
   * workspace can be it: the same argv, still running, the same uid, and the same values of what a process reads
   * only as it starts (Node's and libuv's variables, the locale), with a start line it takes.
   */
  const warmFor = (
    id: string,
    argv: ReadonlyArray<string>,
    uid: number | undefined,
    env: Readonly<Record<string, string>>,
    cwd: string
  ) => {
    const warm = taken.get(id)
    if (warm === undefined || warm.argv.join("\0") !== argv.join("\0")) return undefined
    taken.delete(id)
    const start = JSON.stringify({ cwd, env } satisfies WarmStart)
    const readAtStart = [...Object.keys(env), ...Object.keys(warm.env)].filter(
      (name) => /^(NODE_|UV_|LC_)/.test(name) || name === "LANG"
    )
    const fits =
      runs(warm.child) &&
      warm.uid === uid &&
      Buffer.byteLength(start) < MAX_WARM_START_BYTES &&
      readAtStart.every((name) => env[name] === warm.env[name])
    if (fits) return { warm, start }
    if (warm.child.pid !== undefined) signalGroup(warm.child.pid, "SIGKILL")
    return undefined
  }
  const keepWarm = (argv: ReadonlyArray<string>) =>
    Effect.gen(function* () {
      const wake = yield* Queue.sliding<void>(1)
      warming = { argv, wake }
      yield* Effect.addFinalizer(() =>
        Effect.promise(async () => {
          warming = undefined
          const warm = spare
          spare = undefined
          if (warm !== undefined) await endWarm(warm)
        })
      )
      const refill = Effect.gen(function* () {
        yield* Queue.take(wake)
        if (warming === undefined || (spare !== undefined && runs(spare.child))) return
        if (failures >= MAX_WARM_FAILURES) return
        // uninterruptible: a scope that ends meanwhile finds what started as `spare`, and ends it
        const started = yield* Effect.tryPromise(() => startWarm(argv)).pipe(
          Effect.either,
          Effect.tap((started) =>
            Effect.sync(() => {
              if (started._tag === "Right") spare = started.right
            })
          ),
          Effect.uninterruptible
        )
        if (started._tag === "Left") {
          failures += 1
          yield* Effect.logWarning(`host runtime: could not start a warm agent: ${started.left.error}`)
          if (failures >= MAX_WARM_FAILURES) return yield* Effect.logWarning(GAVE_UP_WARM)
          yield* Effect.sleep("1 second")
          yield* Queue.offer(wake, undefined)
          return
        }
        const warm = started.right
        // ended before a workspace took it: its uid and directory go, and another boots a second later
        void warm.exit.then(async () => {
          if (spare !== warm) return
          spare = undefined
          failures += 1
          await endWarm(warm)
          if (failures < MAX_WARM_FAILURES) refillLater()
          else Effect.runFork(Effect.logWarning(GAVE_UP_WARM))
        })
      })
      yield* Queue.offer(wake, undefined)
      yield* Effect.forkScoped(Effect.forever(refill))
    })

  /** `~/x` in the workspace's home, a relative path in the checkout, an absolute one under `rootfs/`. */
  const filePath = (id: string, path: string) =>
    path.startsWith("~/")
      ? join(home(id), path.slice(2))
      : isAbsolute(path)
        ? join(dirOf(id), "rootfs", path)
        : join(checkout(id), path)

  const killAll = (id: string, signal: NodeJS.Signals, uid?: number) =>
    Effect.sync(() => {
      for (const child of processes.get(id) ?? []) {
        if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
          try {
            process.kill(-child.pid, signal)
          } catch {}
        }
      }
      if (uid !== undefined && signal === "SIGKILL") killUser(uid)
    })

  /** The uid recorded for a workspace, read for a delete (which gets an id, not the record). */
  const recordedUid = (id: string) =>
    records.read(id).pipe(Effect.map((record) => (record._tag === "Some" ? record.value.uid : undefined)))

  /**
   * `uid` while it is still the workspace's own, else undefined: a record left by a delete cut short may name a uid
   * freed and claimed since by another workspace (of this node or another on the machine), whose processes a kill by
   * uid must not reach.
   */
  const ownUid = (id: string, uid: number | undefined) =>
    Effect.promise(async () => (uid !== undefined && (await holdsUid(uidClaims, uid, dirOf(id))) ? uid : undefined))

  /**
   * The workspace's user: a uid of its own, owner of its home and `rootfs/` (0700); its directory and the checkout
   * are root's and only its group may enter them (0710), so the env file there stays root's. Every directory above it gets o+x
   * (enter, not list) so the user can reach its own. The checkout stays root's until `ownCheckout`.
   */
  const isolateWorkspace = (id: string, log: BootLog, warm: Warm | undefined) =>
    io("user", async () => {
      // the node's data dir and the workspaces' parent: enter, never list (other workspaces' ids, session records)
      for (const dir of [resolve(options.dataDir), root]) await chmod(dir, 0o711)
      const granted = await ensureTraversable(root)
      const uid = warm?.uid ?? (await claimUid(uidClaims, dirOf(id), tmpDirs))
      try {
        for (const dir of [home(id), join(dirOf(id), "rootfs")]) {
          await ownTree(dir, uid, uid)
          await chmod(dir, 0o700)
        }
        await chown(dirOf(id), 0, uid)
        await chmod(dirOf(id), 0o710)
        // the checkout stays root's until `ownCheckout`, but its user may enter it: a warm agent (ADR 0055) goes
        // there itself, as that user, where a spawn's chdir runs as root (and a node's umask is 077)
        await chown(checkout(id), 0, uid)
        await chmod(checkout(id), 0o710)
      } catch (error) {
        // not recorded yet: the create's failure would not find the uid to free
        killUser(uid)
        await releaseUid(uidClaims, uid, dirOf(id))
        throw error
      }
      return { uid, gid: uid, granted }
    }).pipe(
      Effect.tap(({ uid, granted }) =>
        log(
          "user",
          "completed",
          `processes run as uid ${uid}${granted.length > 0 ? `; made ${granted.join(", ")} traversable (o+x)` : ""}`
        )
      ),
      Effect.map(({ uid, gid }) => ({ uid, gid }))
    )

  /**
   * The checkout, cloned and written as root, handed to the workspace's user last. Its agent may run meanwhile
   * (ADR 0037): `chown -R` changes a directory after what is in it, so nothing becomes the user's to write while
   * the walk can still go through it, and the checkout itself (in the root-owned workspace directory) is last.
   */
  const ownCheckout = (id: string, owner: { readonly uid: number; readonly gid: number }) =>
    io("user", async () => {
      await ownTree(checkout(id), owner.uid, owner.gid)
      await chmod(checkout(id), 0o700)
    })

  /**
   * The directories from the workspace's own directory down to `dir`, made one at a time as root: each one that
   * is there must be a directory, not a symlink (the repository chose what the checkout holds), so nothing is
   * made elsewhere on the machine on the way (`mkdir -p` follows links).
   */
  const makeDirsInside = async (id: string, dir: string, path: string) => {
    const base = dirOf(id)
    let at = base
    for (const segment of relative(base, dir)
      .split(sep)
      .filter((s) => s !== "")) {
      at = join(at, segment)
      const found = await lstat(at).catch(() => undefined)
      if (found === undefined) await mkdir(at, { mode: 0o755 })
      else if (found.isSymbolicLink()) throw new Error(`${path} leads out of the workspace`)
      else if (!found.isDirectory()) throw new Error(`${path}: ${relative(base, at)} is a file, not a directory`)
    }
  }

  /** One file of the spec, written as root where nothing of the workspace's can write (yet). */
  const writeSpecFile = (id: string, file: WorkspaceSpec["files"][number]) => {
    const target = filePath(id, file.path)
    return io("files", async () => {
      await makeDirsInside(id, dirname(target), file.path)
      // Written as root into a checkout whose content the repository chose: a symlink there must not send the
      // write elsewhere on the machine.
      const parent = await realpath(dirname(target))
      if (!parent.startsWith(`${await realpath(dirOf(id))}/`))
        throw new Error(`${file.path} leads out of the workspace`)
      const handle = await open(
        target,
        constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
        file.mode ?? 0o644
      )
      await handle.writeFile(file.content).finally(() => handle.close())
    })
  }

  /**
   * In order: what is not the checkout (home and `rootfs/` files, the env) as root, then the user; then the
   * workspace takes processes (ADR 0037) while the repository is cloned and its files written, still as root and
   * where the user cannot write; the checkout becomes the user's last.
   */
  const provision: Provisioner["provision"] = (spec, log, options, openToProcesses) =>
    Effect.gen(function* () {
      const id = spec.workspaceId
      yield* io("prepare", async () => {
        await rm(dirOf(id), { recursive: true, force: true })
        for (const dir of [home(id), join(dirOf(id), "rootfs"), checkout(id)]) await mkdir(dir, { recursive: true })
      })
      for (const file of spec.files) if (!inCheckout(file.path)) yield* writeSpecFile(id, file)
      const env = Object.fromEntries(spec.env.map((e) => [e.name, e.value]))
      yield* io("env", () => writeFile(envFile(id), JSON.stringify(env), { mode: 0o600 }))
      if (spec.env.length > 0) {
        yield* log("env", "completed", `env set: ${spec.env.map((e) => e.name).join(", ")} (values not shown)`)
      }
      const source = yield* localRepository(spec.repoUrl)
      const remote = remoteOf(spec.repoUrl)
      const warm = yield* takeWarm(id)
      const owner = isolate ? yield* isolateWorkspace(id, log, warm) : undefined
      yield* openToProcesses(owner ?? {})
      const credential =
        remote === undefined || options?.repositoryCredential === undefined
          ? undefined
          : yield* options.repositoryCredential
      yield* log(
        "clone",
        "started",
        `cloning ${spec.repoUrl}${spec.branch ? ` (branch ${spec.branch})` : ""}${credential ? " with a repository token" : ""}`
      )
      yield* runLogged(
        "clone",
        [
          "git",
          ...(credential === undefined ? noCredentialHelper : cloneCredentialArgs),
          "clone",
          "--progress",
          // A local repository's objects are copied: hard links would share their inodes with the
          // workspace, whose chown below would hand the node's source files to the agent's uid.
          "--no-hardlinks",
          ...(spec.branch ? ["--branch", spec.branch] : []),
          "--",
          source,
          // made (empty) above: git clones into an empty directory
          checkout(id)
        ],
        dirOf(id),
        log,
        credential === undefined
          ? gitEnv(dirOf(id))
          : {
              ...gitEnv(dirOf(id)),
              SAM_GIT_USERNAME: credential.username,
              SAM_GIT_PASSWORD: Redacted.value(credential.token)
            },
        // a local copy writes nothing until it is done, and has no server to wait on
        localPath(spec.repoUrl) === undefined ? cloneStallMs() : undefined
      ).pipe(
        Effect.mapError((e) =>
          credential === undefined && localPath(spec.repoUrl) === undefined
            ? new ProvisionError({ step: e.step, message: `${e.message} (${NO_MACHINE_CREDENTIALS})` })
            : e
        )
      )
      yield* log("clone", "completed", "repository cloned")
      if (remote !== undefined) {
        // git in the workspace asks the vm-agent for a token through this helper, on the workspace's socket.
        const helper = join(dirOf(id), "git-credential-sam.cjs")
        yield* io("git", () => writeFile(helper, HELPER_SCRIPT, { mode: 0o644 }))
        yield* runLogged(
          "git",
          ["git", "config", "credential.helper", `!"${process.execPath}" "${helper}" "${gitSocket(id)}"`],
          checkout(id),
          log,
          gitEnv(dirOf(id))
        )
      }
      for (const file of spec.files) if (inCheckout(file.path)) yield* writeSpecFile(id, file)
      if (spec.files.length > 0) yield* log("files", "completed", `wrote ${spec.files.map((f) => f.path).join(", ")}`)
      if (owner !== undefined) yield* ownCheckout(id, owner)
      return owner ?? {}
    }).pipe(Effect.ensuring(settleWarm(spec.workspaceId)))

  /** A workspace made before per-workspace users would run its agents as root: it is made again. */
  const predatesIsolation = (record: WorkspaceRecord) => isolate && record.uid === undefined

  const provisioner: Provisioner = {
    kind: "host",
    pathOf: checkout,
    homeOf: home,
    provision,
    halt: (record) => killAll(record.workspaceId, "SIGKILL", record.uid),
    // every process of the workspace's own uid; without one (a vm-agent that is not root) nothing is known to be its
    endProcesses: (record) =>
      ownUid(record.workspaceId, isolate ? record.uid : undefined).pipe(
        Effect.flatMap((uid) => killAll(record.workspaceId, "SIGKILL", uid))
      ),
    resume: () => Effect.void,
    health: (record) =>
      predatesIsolation(record)
        ? Effect.succeed("missing" as const)
        : Effect.promise(() =>
            stat(join(record.path, ".git")).then(
              () => "ok" as const,
              () => "missing" as const
            )
          ),
    destroy: (id) =>
      Effect.gen(function* () {
        const uid = yield* recordedUid(id)
        const own = yield* ownUid(id, uid)
        yield* killAll(id, "SIGKILL", own)
        // a clone into it that outlived the vm-agent which started it (killed mid-create): root's, not the uid's
        yield* Effect.sync(() => killWithArgument(checkout(id)))
        yield* io("delete", async () => {
          if (own !== undefined) await removeTmpFilesOf(own, tmpDirs)
          await rm(dirOf(id), { recursive: true, force: true })
          if (uid !== undefined) await releaseUid(uidClaims, uid, dirOf(id))
        })
      }),
    spawn: (record, id, argv, opts) =>
      Effect.acquireRelease(
        Effect.gen(function* () {
          if (predatesIsolation(record)) {
            return yield* new RuntimeFailure({
              reason: "spawn",
              message: `workspace ${id} was made before workspaces had users of their own; create it again`
            })
          }
          const env = yield* Effect.tryPromise({
            try: async () => JSON.parse(await readFile(envFile(id), "utf8")) as Record<string, string>,
            catch: (cause) => new RuntimeFailure({ reason: "io", message: `cannot read the workspace env: ${cause}` })
          })
          const tmp = yield* privateTmp(id, isolate ? record.uid : undefined, record.gid)
          const cwd = opts?.cwd ? resolve(record.path, opts.cwd) : record.path
          // Claude Code keeps its own directory in CLAUDE_CODE_TMPDIR, not TMPDIR
          const processEnv: Record<string, string> = {
            ...baseEnv(home(id)),
            TMPDIR: tmp,
            TMP: tmp,
            TEMP: tmp,
            CLAUDE_CODE_TMPDIR: tmp,
            ...env,
            ...opts?.env
          }
          // only a warm process's own start says it is one (ADR 0055)
          delete processEnv[WARM_START_ENV]
          const [command = "", ...args] = argv
          const taking = warmFor(id, argv, isolate ? record.uid : undefined, processEnv, cwd)
          const { child, exit } =
            taking !== undefined
              ? yield* Effect.sync(() => {
                  // the process this spawn would start, booted already: where it runs and its environment come now
                  taking.warm.child.stdin.write(`${taking.start}\n`)
                  return taking.warm
                })
              : yield* Effect.gen(function* () {
                  const child = spawnChild(command, args, {
                    cwd,
                    detached: true,
                    stdio: ["pipe", "pipe", "pipe"],
                    ...(isolate && record.uid !== undefined ? { uid: record.uid, gid: record.gid ?? record.uid } : {}),
                    env: processEnv
                  })
                  const exit = exitOf(child)
                  yield* Effect.async<void, RuntimeFailure>((resume) => {
                    child.once("spawn", () => resume(Effect.void))
                    child.once("error", (e) =>
                      resume(
                        Effect.fail(
                          new RuntimeFailure({ reason: "spawn", message: `${command}: ${e.message}`, cause: e })
                        )
                      )
                    )
                  })
                  // a process that never reads its stdin closes the pipe; writing to it then is not our failure
                  child.stdin.on("error", () => {})
                  track(id, child, exit)
                  return { child, exit }
                })
          const proc: WorkspaceProcess = {
            stdin: child.stdin,
            stdout: child.stdout,
            stderr: child.stderr,
            exitCode: Effect.promise(() => exit),
            kill: (signal = "SIGTERM") =>
              Effect.sync(() => {
                if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
                  try {
                    process.kill(-child.pid, signal)
                  } catch {}
                }
              }),
            pgid: Effect.succeed(child.pid ?? 0),
            killGroup: (signal) =>
              Effect.sync(() => {
                if (child.pid !== undefined) signalGroup(child.pid, signal)
              }),
            groupAlive: Effect.sync(() => child.pid !== undefined && groupAlive(child.pid)),
            killSince: (since, signal) =>
              Effect.sync(() => {
                if (child.pid !== undefined) signalStartedSince(child.pid, since, signal)
              }),
            aliveSince: (since) =>
              Effect.sync(() => child.pid !== undefined && startedSince(child.pid, since).length > 0)
          }
          return proc
        }),
        (proc) => proc.kill("SIGKILL")
      )
  }

  const lifecycle = makeLifecycle(records, provisioner)
  return {
    ...lifecycle,
    keepWarm,
    gitHelper: (id) =>
      records
        .read(id)
        .pipe(
          Effect.map((record) =>
            record._tag === "None" || remoteOf(record.value.repoUrl) === undefined
              ? undefined
              : { socketPath: gitSocket(id), uid: record.value.uid, repoUrl: record.value.repoUrl }
          )
        ),
    capabilities: () => Effect.succeed({ docker: false, dockerReason: "host runtime", hostRuntime: true })
  }
}

/**
 * The host runtime as a vm-agent starts it: warned about when it cannot give workspaces users of their own; when it
 * can, first the uids of workspaces gone without their delete are freed: their processes, their files in the
 * machine's /tmp and their claims (`reclaimStaleUids`).
 */
export const startHostRuntime = (options: HostRuntimeOptions) =>
  Effect.gen(function* () {
    // the warm processes of a vm-agent that ended without its finalizers: their uids' claims go stale with this
    yield* Effect.promise(() =>
      rm(join(resolve(options.dataDir, "workspaces"), ".warm"), { recursive: true, force: true })
    )
    if (!(options.isolate ?? canIsolate())) yield* Effect.logWarning(NOT_ISOLATED_WARNING)
    else {
      const reclaimed = yield* Effect.promise(() =>
        reclaimStaleUids(options.uidClaims ?? DEFAULT_UID_CLAIMS, options.tmpDirs).catch(() => undefined)
      )
      if (reclaimed !== undefined && reclaimed.uids > 0)
        yield* Effect.logInfo(
          `freed ${reclaimed.uids} uid(s) of workspaces gone without their delete: ${reclaimed.processes} process(es) ended, ${reclaimed.tmpEntries} entries of /tmp removed`
        )
    }
    return makeHostRuntime(options)
  })

export const layerHost = (options: HostRuntimeOptions) => Layer.effect(WorkspaceRuntime, startHostRuntime(options))
