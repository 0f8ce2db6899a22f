import { randomBytes } from "node:crypto"
import { createWriteStream } from "node:fs"
import { mkdir, readdir, rename, rm } from "node:fs/promises"
import { join } from "node:path"
import { Transform } from "node:stream"
import { pipeline } from "node:stream/promises"
import { Data, Effect, Schedule } from "effect"
import { SSH_WITHOUT_CREDENTIALS } from "../runtime/internal/gitHelper.js"
import type { WorkspaceRuntimeService } from "../runtime/WorkspaceRuntime.js"
import type { GitCredentials } from "./GitCredentials.js"

const gitIn = (runtime: WorkspaceRuntimeService, workspaceId: string, args: ReadonlyArray<string>) =>
  runtime.exec(workspaceId, ["git", "-c", "user.name=SAM", "-c", "user.email=sam@localhost", ...args])

/**
 * Push `branch` of the workspace to its origin with the workspace's repository token (through its credential
 * helper), refusing the default branch: SAM's pushes only ever create or move task branches. Says why not. It runs
 * in the workspace, as its user; still, nothing of the machine's: no system git config (a credential helper there),
 * no SSH key or agent (a host runtime's workspace without a user of its own is the vm-agent's user).
 */
export const pushBranch = (
  runtime: WorkspaceRuntimeService,
  workspaceId: string,
  branch: string,
  defaultBranch: string
) =>
  Effect.gen(function* () {
    if (branch === defaultBranch || branch === `refs/heads/${defaultBranch}`)
      return { pushed: false as const, reason: `SAM never pushes to the default branch (${defaultBranch})` }
    const ref = `refs/heads/${branch}`
    const pushed = yield* runtime.exec(workspaceId, ["git", "push", "--porcelain", "origin", `${ref}:${ref}`], {
      env: { GIT_TERMINAL_PROMPT: "0", GIT_CONFIG_NOSYSTEM: "1", GIT_SSH_COMMAND: SSH_WITHOUT_CREDENTIALS }
    })
    return pushed.exitCode === 0
      ? { pushed: true as const }
      : { pushed: false as const, reason: `git push failed: ${pushed.stderr.trim().split("\n").slice(-3).join(" | ")}` }
  })

/**
 * Task mode: commit what the agent changed to a new branch `sam/<taskId>` (never the default branch) and,
 * when the repository is reached with a SAM token (ADR 0028), push it; the control plane then opens the pull
 * request. Says what happened.
 */
export const commitTaskWork = (
  runtime: WorkspaceRuntimeService,
  workspaceId: string,
  taskId: string,
  git?: GitCredentials
) =>
  Effect.gen(function* () {
    const branch = `sam/${taskId}`
    const status = yield* gitIn(runtime, workspaceId, ["status", "--porcelain"])
    if (status.exitCode !== 0)
      return { outcome: "failed" as const, reason: `git status failed: ${status.stderr.trim()}` }
    if (status.stdout.trim() === "") return { outcome: "no_changes" as const }
    for (const args of [
      ["checkout", "-B", branch],
      ["add", "-A"],
      ["commit", "-q", "-m", `SAM task ${taskId}`]
    ]) {
      const step = yield* gitIn(runtime, workspaceId, args)
      if (step.exitCode !== 0)
        return { outcome: "failed" as const, reason: `git ${args[0]} failed: ${step.stderr.trim()}` }
    }
    const sha = yield* gitIn(runtime, workspaceId, ["rev-parse", "HEAD"])
    const committed = { outcome: "committed" as const, branch, commitSha: sha.stdout.trim() }
    // Only a repository the workspace reaches over http(s) can be pushed with a SAM token.
    const helper = runtime.gitHelper === undefined ? undefined : yield* runtime.gitHelper(workspaceId)
    const access =
      git === undefined || helper === undefined ? ({ _tag: "None" } as const) : yield* git.access(workspaceId)
    if (access._tag === "None") return committed
    if (access._tag === "Refused")
      return { outcome: "failed" as const, reason: `committed to ${branch} but cannot push it: ${access.reason}` }
    const pushed = yield* pushBranch(runtime, workspaceId, branch, access.credential.defaultBranch)
    return pushed.pushed
      ? committed
      : { outcome: "failed" as const, reason: `committed to ${branch} but not pushed: ${pushed.reason}` }
  }).pipe(
    Effect.catchAll((error) =>
      Effect.succeed({ outcome: "failed" as const, reason: `cannot commit: ${error.message}` })
    )
  )

/** The largest bundle of a workspace's task branches kept: `SAM_BRANCH_BUNDLE_MAX_BYTES`, default 1 GiB. */
export const bundleMaxBytes = () => {
  const configured = Number(process.env.SAM_BRANCH_BUNDLE_MAX_BYTES)
  return Number.isFinite(configured) && configured > 0 ? configured : 1024 ** 3
}

/** Why a workspace's task branches were not kept; `retry` when another attempt may do better. */
class KeepFailure extends Data.TaggedError("KeepFailure")<{ readonly message: string; readonly retry: boolean }> {}

const asFailure = (retry: boolean) => (e: unknown) =>
  new KeepFailure({ message: e instanceof Error ? e.message : String(e), retry })

/** A git command of the keep that exited with an error: worth another attempt. */
const gitFailed = (what: string, result: { readonly exitCode: number; readonly stderr: string }) =>
  new KeepFailure({
    message: `git ${what} failed (${result.exitCode}): ${result.stderr.trim().split("\n").slice(-2).join(" | ")}`,
    retry: true
  })

/** The commit of each task branch (`sam/…`) under `base` (`refs/heads/`, `refs/remotes/origin/`), by its name. */
const taskRefs = (runtime: WorkspaceRuntimeService, workspaceId: string, base: string) =>
  gitIn(runtime, workspaceId, ["for-each-ref", "--format=%(refname) %(objectname)", `${base}sam/`]).pipe(
    Effect.mapError(asFailure(true)),
    Effect.flatMap((refs) =>
      refs.exitCode === 0
        ? Effect.succeed(
            new Map(
              refs.stdout
                .split("\n")
                .filter((line) => line.trim() !== "")
                .map((line) => {
                  const [ref = "", commit = ""] = line.split(" ")
                  return [ref.slice(base.length), commit] as const
                })
            )
          )
        : Effect.fail(gitFailed("for-each-ref", refs))
    )
  )

/** One attempt: what was kept, or why not. */
const keepOnce = (runtime: WorkspaceRuntimeService, workspaceId: string, branchDir: string) =>
  Effect.gen(function* () {
    const local = yield* taskRefs(runtime, workspaceId, "refs/heads/")
    const origin = yield* taskRefs(runtime, workspaceId, "refs/remotes/origin/")
    const tasks = [...local.keys()]
    if (tasks.length === 0) return "no task branch to keep"
    // A branch pushed as it is (its push moved `origin/<branch>` to it) is on its origin already: kept there.
    const branches = tasks.filter((name) => origin.get(name) !== local.get(name))
    if (branches.length === 0) return `nothing to keep: its task branches are on its origin (${tasks.join(", ")})`
    // Only the commits its origin lacks, as the workspace last saw the origin: the bundle is the task's work, not the
    // repository's history, and it is fetched into a clone of that origin.
    const own = yield* gitIn(runtime, workspaceId, [
      "rev-list",
      "--count",
      ...branches.map((name) => `refs/heads/${name}`),
      "--not",
      "--remotes=origin"
    ]).pipe(Effect.mapError(asFailure(true)))
    if (own.exitCode !== 0) return yield* gitFailed("rev-list", own)
    if (Number(own.stdout.trim()) === 0)
      return `nothing to keep: its task branches have no commit its origin lacks (${branches.join(", ")})`
    const file = join(branchDir, `${workspaceId}.bundle`)
    const tmp = `${file}.${randomBytes(4).toString("hex")}.tmp`
    const max = bundleMaxBytes()
    yield* Effect.scoped(
      Effect.gen(function* () {
        const proc = yield* runtime.spawn(workspaceId, [
          "git",
          "bundle",
          "create",
          "-",
          ...branches.map((name) => `refs/heads/${name}`),
          "--not",
          "--remotes=origin"
        ])
        proc.stdin.end()
        proc.stderr.resume()
        let bytes = 0
        let over = false
        const capped = new Transform({
          transform(chunk: Buffer, _encoding, done) {
            bytes += chunk.length
            over = bytes > max
            done(over ? new Error(`their bundle is over ${max} bytes (SAM_BRANCH_BUNDLE_MAX_BYTES)`) : null, chunk)
          }
        })
        yield* Effect.tryPromise({
          try: async () => {
            await mkdir(branchDir, { recursive: true, mode: 0o700 })
            await pipeline(proc.stdout, capped, createWriteStream(tmp, { mode: 0o600 }))
          },
          // a bundle over the limit stays so: not tried again
          catch: (e) => asFailure(!over)(e)
        })
        const code = yield* proc.exitCode
        if (code !== 0 || bytes === 0)
          return yield* new KeepFailure({ message: `git bundle exited with ${code}`, retry: true })
        yield* Effect.tryPromise({ try: () => rename(tmp, file), catch: asFailure(true) })
      })
    ).pipe(Effect.ensuring(Effect.promise(() => rm(tmp, { force: true }))))
    const pushed = tasks.filter((name) => !branches.includes(name))
    return `kept ${branches.join(", ")} in ${file}${pushed.length === 0 ? "" : ` (on its origin: ${pushed.join(", ")})`}`
  }).pipe(Effect.mapError((e) => (e instanceof KeepFailure ? e : new KeepFailure({ message: e.message, retry: true }))))

/**
 * Before a workspace stops (its files may go with its node), its task branches `sam/*` are kept as one
 * git bundle, `<branchDir>/<workspaceId>.bundle` (ADR 0023): `git fetch <bundle> 'sam/*:sam/*'` in a clone of the
 * workspace's origin gets them back. The bundle holds what the origin lacks (ADR 0060): the branches not pushed as
 * they are, and of them only the commits no `origin/*` ref of the workspace reaches. Says what it kept; a workspace
 * with no task branch, or whose task branches are all on its origin, keeps nothing. The bundle is streamed to its file,
 * at most `bundleMaxBytes` (the workspace decides how large its branches are: one held in memory could end the
 * vm-agent). A failure that may pass (a spawn, git, a write) is tried again, `attempts` times in all, since the stop
 * that follows is the last chance; one that stays (over the limit) is not. A failure is said, never a defect that
 * would cut the stop short.
 */
export const keepTaskBranches = (
  runtime: WorkspaceRuntimeService,
  workspaceId: string,
  branchDir: string,
  attempts = 3
) =>
  keepOnce(runtime, workspaceId, branchDir).pipe(
    Effect.retry({ times: attempts - 1, schedule: Schedule.spaced("250 millis"), while: (e) => e.retry }),
    Effect.catchAll((e) =>
      Effect.succeed(
        `could not keep its task branches${e.retry && attempts > 1 ? ` (${attempts} attempts)` : ""}: ${e.message}`
      )
    ),
    Effect.catchAllDefect((defect) => Effect.succeed(`could not keep its task branches: ${String(defect)}`))
  )

/**
 * A keep cut short (the vm-agent killed while it wrote) leaves its `.tmp` file in the branch directory, which the
 * nodes of one machine may share. When a vm-agent starts, no keep of its own workspaces is under way, so their
 * partial files go (another node's stay: its keep may be writing). Says how many went.
 */
export const removePartialBundles = (branchDir: string, workspaceIds: ReadonlyArray<string>) =>
  Effect.promise(async () => {
    const ours = new Set(workspaceIds)
    const names = await readdir(branchDir).catch(() => [] as Array<string>)
    const partial = names.filter((name) => name.endsWith(".tmp") && ours.has(name.split(".bundle.")[0] ?? ""))
    await Promise.all(partial.map((name) => rm(join(branchDir, name), { force: true })))
    return partial.length
  })
