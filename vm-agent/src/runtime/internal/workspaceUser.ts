import { execFile, spawnSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as Fs from "node:fs"
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { promisify } from "node:util"
import { baseEnv } from "./agentEnv.js"

/**
 * Per-workspace users of the host runtime (ADR 0014). Only root can give a process another uid, so a vm-agent that
 * is not root runs agents as itself and cannot keep them apart.
 */
export const canIsolate = () => process.getuid?.() === 0

/** Workspace uids (each its own gid too) come from this range, far above the system's and people's ids. */
const FIRST_UID = 200_000
const UID_RANGE = 1_000_000

/** Machine-wide: several vm-agents of one machine (local nodes) must never hand out the same uid. */
export const DEFAULT_UID_CLAIMS = "/var/lib/sam/workspace-uids"

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false
  )

const tryClaim = async (file: string, owner: string): Promise<"mine" | "held" | "taken" | "stale"> => {
  try {
    await writeFile(file, owner, { flag: "wx", mode: 0o600 })
    return "mine"
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error
  }
  const holder = await readFile(file, "utf8").catch(() => "")
  if (holder === owner) return "held"
  return (await isStale(holder)) ? "stale" : "taken"
}

/** A claim whose workspace directory is gone (deleted without release, a removed test dir): its uid is free again. */
const isStale = async (holder: string) => holder !== "" && !(await exists(holder))

/** The uid `claimUid` tries first for the workspace in directory `owner`: derived from the path. */
export const firstCandidateUid = (owner: string) =>
  FIRST_UID + (createHash("sha256").update(owner).digest().readUInt32BE(0) % UID_RANGE)

/**
 * A uid for the workspace in directory `owner` (which must exist), claimed by a file `<claims>/<uid>` created
 * exclusively, so concurrent vm-agents on one machine never share one. The same owner gets the same uid again;
 * the first candidate is derived from the path, so a retry mostly lands on the same number.
 */
export const claimUid = async (
  claims: string,
  owner: string,
  tmpDirs: ReadonlyArray<string> = machineTmpDirs()
): Promise<number> => {
  await mkdir(claims, { recursive: true, mode: 0o700 })
  const start = firstCandidateUid(owner) - FIRST_UID
  for (let i = 0; i < UID_RANGE; i++) {
    const uid = FIRST_UID + ((start + i) % UID_RANGE)
    const file = join(claims, String(uid))
    let outcome = await tryClaim(file, owner)
    if (outcome === "stale") {
      // its last holder's workspace went without its delete: what that left running or in /tmp is not the next one's
      killUser(uid)
      await removeTmpFilesOf(uid, tmpDirs)
      await rm(file, { force: true })
      outcome = await tryClaim(file, owner)
    }
    if (outcome === "mine" || outcome === "held") return uid
  }
  throw new Error(`no free workspace uid left in ${claims}`)
}

/** Whether `uid` is still claimed for the workspace in directory `owner` (not freed and claimed by another since). */
export const holdsUid = async (claims: string, uid: number, owner: string) =>
  (await readFile(join(claims, String(uid)), "utf8").catch(() => "")) === owner

/**
 * Hands the claim of `uid` from the directory `from` to `to` (a warm process's uid to the workspace that takes it,
 * ADR 0055) in one rename, so that no moment finds it unclaimed or stale; false when `from` does not hold it.
 */
export const transferUid = async (claims: string, uid: number, from: string, to: string) => {
  const file = join(claims, String(uid))
  if ((await readFile(file, "utf8").catch(() => "")) !== from) return false
  const tmp = `${file}.${randomBytes(6).toString("hex")}.tmp`
  await writeFile(tmp, to, { mode: 0o600 })
  await rename(tmp, file)
  return true
}

export const releaseUid = async (claims: string, uid: number, owner: string) => {
  const file = join(claims, String(uid))
  if ((await readFile(file, "utf8").catch(() => "")) === owner) await rm(file, { force: true })
}

/** Changes of owner made between two turns of the event loop in `ownTree`. */
const OWN_STEP = 512

/**
 * `chown -R -h` in process (issue 12: no `chown` to spawn on the way to the agent's first output): every entry of
 * the tree, links changed and never followed, each directory after everything in it. So nothing becomes the user's
 * to write while the walk can still go through it: a tree only root could write (a checkout cloned as root, a new
 * workspace's home) is handed over whole, whatever its user does meanwhile. The calls are synchronous (a few
 * microseconds each; the promises' round trips cost milliseconds on a busy node), with a turn of the event loop
 * every `OWN_STEP` of them, so a large checkout does not hold up the vm-agent.
 */
export const ownTree = async (path: string, uid: number, gid: number): Promise<void> => {
  const stack: Array<{ readonly dir: string; listed: boolean }> = [{ dir: path, listed: false }]
  let changed = 0
  /** one entry's owner changed; true when the event loop is due a turn */
  const own = (entry: string) => {
    Fs.lchownSync(entry, uid, gid)
    return ++changed % OWN_STEP === 0
  }
  const turn = () => new Promise((resolve) => setImmediate(resolve))
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!
    if (top.listed) {
      stack.pop()
      if (own(top.dir)) await turn()
      continue
    }
    top.listed = true
    for (const entry of Fs.readdirSync(top.dir, { withFileTypes: true })) {
      const child = join(top.dir, entry.name)
      if (entry.isDirectory()) stack.push({ dir: child, listed: false })
      else if (own(child)) await turn()
    }
  }
}

/** Adds o+x to `dir` and every directory above it that lacks it (no listing: `r` is left as it is). */
export const ensureTraversable = async (dir: string) => {
  const granted: Array<string> = []
  for (let each = resolve(dir); ; each = dirname(each)) {
    const { mode } = await stat(each)
    if ((mode & 0o001) === 0) {
      await chmod(each, (mode & 0o7777) | 0o001)
      granted.push(each)
    }
    if (each === dirname(each)) break
  }
  return granted
}

/** Processes whose real or effective uid is one of `uids`. */
const processesOf = (uids: ReadonlySet<number>): Array<number> => {
  let pids: Array<string>
  try {
    pids = Fs.readdirSync("/proc").filter((name) => /^\d+$/.test(name))
  } catch {
    return []
  }
  return pids.flatMap((pid) => {
    try {
      const line = /^Uid:\s+(\d+)\s+(\d+)/m.exec(Fs.readFileSync(`/proc/${pid}/status`, "utf8"))
      return line !== null && (uids.has(Number(line[1])) || uids.has(Number(line[2]))) ? [Number(pid)] : []
    } catch {
      return []
    }
  })
}

/** The machine's temporary directories, shared by every workspace of a host node. */
export const machineTmpDirs = (): ReadonlyArray<string> => [...new Set(["/tmp", tmpdir()])]

/**
 * Removes what `uid` left at the top of the machine's temporary directories, once its processes are gone: what a
 * tool put there whatever `TMPDIR` said (Claude Code its socket directory, `cc-socks-<uid>`, when the workspace's
 * own path is too long for a socket's). Only while the uid is still the workspace's own (the callers check). The
 * removal runs as the uid itself, not as root: a directory swapped for a link while it is walked (by the uid, or by
 * anyone, in a world-writable directory it made) then reaches only what the uid could remove anyway.
 */
export const removeTmpFilesOf = async (uid: number, tmpDirs: ReadonlyArray<string> = machineTmpDirs()) =>
  removeAs(uid, (await tmpEntriesOf(new Set([uid]), tmpDirs)).get(uid) ?? [])

/** The top-level entries of `tmpDirs` each of `uids` owns. */
const tmpEntriesOf = async (uids: ReadonlySet<number>, tmpDirs: ReadonlyArray<string>) => {
  const owned = new Map<number, Array<string>>()
  for (const dir of tmpDirs) {
    for (const name of await Fs.promises.readdir(dir).catch(() => [] as Array<string>)) {
      const path = join(dir, name)
      const owner = await Fs.promises.lstat(path).then(
        (s) => s.uid,
        () => undefined
      )
      if (owner !== undefined && uids.has(owner)) owned.set(owner, [...(owned.get(owner) ?? []), path])
    }
  }
  return owned
}

/**
 * The environment of a helper run as a workspace's uid: never the vm-agent's, whose secrets (an exporter's headers)
 * the uid's own processes could read in the helper's `/proc/<pid>/environ` while it runs.
 */
const AS_UID_ENV = baseEnv("/")

/** `rm -rf` of `paths` with `uid`'s rights; how many there were. */
const removeAs = async (uid: number, paths: ReadonlyArray<string>) => {
  for (let i = 0; i < paths.length; i += 500) {
    await promisify(execFile)("rm", ["-rf", "--one-file-system", "--", ...paths.slice(i, i + 500)], {
      uid,
      gid: uid,
      env: AS_UID_ENV
    }).catch(() => undefined)
  }
  return paths.length
}

/** What `reclaimStaleUids` found and did. */
export interface Reclaimed {
  readonly uids: number
  readonly processes: number
  readonly tmpEntries: number
}

/**
 * Frees the uids of workspaces gone without their delete (their directory removed with their node's data, a
 * machine that stopped mid-delete): claims whose workspace directory is gone. Their processes are killed (nothing
 * else would end them: no vm-agent lists a workspace it cannot find), what they left at the top of the machine's
 * temporary directories is removed (as the uid), and the claim goes. Run when a vm-agent on the host runtime
 * starts. A uid with no claim is left alone: a released one was cleaned at its delete, and one never claimed is not
 * SAM's (the range may overlap other programs' subordinate ids).
 */
export const reclaimStaleUids = async (
  claims: string,
  tmpDirs: ReadonlyArray<string> = machineTmpDirs()
): Promise<Reclaimed> => {
  const stale = new Map<number, string>()
  for (const name of await Fs.promises.readdir(claims).catch(() => [] as Array<string>)) {
    const uid = Number(name)
    if (!Number.isInteger(uid) || uid < FIRST_UID || uid >= FIRST_UID + UID_RANGE) continue
    const holder = await readFile(join(claims, name), "utf8").catch(() => "")
    if (await isStale(holder)) stale.set(uid, holder)
  }
  if (stale.size === 0) return { uids: 0, processes: 0, tmpEntries: 0 }
  const processes = killUsers(new Set(stale.keys()))
  const owned = await tmpEntriesOf(new Set(stale.keys()), tmpDirs)
  let tmpEntries = 0
  for (const [uid, paths] of owned) tmpEntries += await removeAs(uid, paths)
  for (const [uid, holder] of stale) await releaseUid(claims, uid, holder)
  return { uids: stale.size, processes, tmpEntries }
}

/**
 * SIGKILLs every process running as `uid`: also those that left the agent's process group (`setsid`, daemons),
 * which only a per-workspace uid lets us find.
 */
export const killUser = (uid: number) => void killUsers(new Set([uid]))

/**
 * `killUser` for several uids; how many processes were found. First `kill -s KILL -- -1` as each uid itself: the kernel
 * signals all of a uid's processes in one walk, which a fork cannot slip past (a fork completes before it or is
 * refused once its parent has the signal). Looking in /proc and killing what is found, pass after pass, missed a
 * child forked after the last pass's look (seen once in `runtime.host.test.ts`: a `setsid sleep` started as the
 * create failed). The passes stay, for what the first step could not reach (no `kill` to run, not root).
 */
const killUsers = (uids: ReadonlySet<number>) => {
  const found = processesOf(uids).length
  if (found === 0) return 0
  if (process.getuid?.() === 0) {
    for (const uid of uids)
      spawnSync("kill", ["-s", "KILL", "--", "-1"], { uid, gid: uid, env: AS_UID_ENV, stdio: "ignore", timeout: 5_000 })
  }
  for (let pass = 0; pass < 5; pass++) {
    const pids = processesOf(uids)
    if (pids.length === 0) break
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL")
      } catch {}
    }
  }
  return found
}
