import { mkdir, rename, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Effect } from "effect"
import type { WorkspaceRuntimeService } from "../runtime/WorkspaceRuntime.js"

const git = (runtime: WorkspaceRuntimeService, workspaceId: string, args: ReadonlyArray<string>) =>
  runtime.exec(workspaceId, ["git", "-c", "user.name=SAM", "-c", "user.email=sam@localhost", ...args])

/**
 * Task mode: commit what the agent changed to a new branch `sam/<taskId>` (never the default branch)
 * and say what happened. Opening a pull request comes later, with GitHub.
 */
export const commitTaskWork = (runtime: WorkspaceRuntimeService, workspaceId: string, taskId: string) =>
  Effect.gen(function* () {
    const branch = `sam/${taskId}`
    const status = yield* git(runtime, workspaceId, ["status", "--porcelain"])
    if (status.exitCode !== 0)
      return { outcome: "failed" as const, reason: `git status failed: ${status.stderr.trim()}` }
    if (status.stdout.trim() === "") return { outcome: "no_changes" as const }
    for (const args of [
      ["checkout", "-B", branch],
      ["add", "-A"],
      ["commit", "-q", "-m", `SAM task ${taskId}`]
    ]) {
      const step = yield* git(runtime, workspaceId, args)
      if (step.exitCode !== 0)
        return { outcome: "failed" as const, reason: `git ${args[0]} failed: ${step.stderr.trim()}` }
    }
    const sha = yield* git(runtime, workspaceId, ["rev-parse", "HEAD"])
    return { outcome: "committed" as const, branch, commitSha: sha.stdout.trim() }
  }).pipe(
    Effect.catchAll((error) =>
      Effect.succeed({ outcome: "failed" as const, reason: `cannot commit: ${error.message}` })
    )
  )

/**
 * Before a workspace stops (its files may go with its node), its task branches `sam/*` are kept as one
 * git bundle, `<branchDir>/<workspaceId>.bundle` (ADR 0023): `git fetch <bundle> 'sam/*:sam/*'` gets
 * them back. Says what it kept; a workspace with no task branch keeps nothing.
 */
export const keepTaskBranches = (runtime: WorkspaceRuntimeService, workspaceId: string, branchDir: string) =>
  Effect.gen(function* () {
    const refs = yield* git(runtime, workspaceId, ["for-each-ref", "--format=%(refname:short)", "refs/heads/sam/"])
    const branches = refs.stdout.split("\n").filter((b) => b.trim() !== "")
    if (refs.exitCode !== 0 || branches.length === 0) return "no task branch to keep"
    // Through base64: the runtime's exec returns text.
    const bundle = yield* runtime.exec(workspaceId, [
      "/bin/sh",
      "-c",
      'git bundle create - --branches="sam/*" 2>/dev/null | base64 | tr -d "\\n"'
    ])
    if (bundle.exitCode !== 0 || bundle.stdout === "") return `could not bundle ${branches.join(", ")}`
    const file = join(branchDir, `${workspaceId}.bundle`)
    yield* Effect.promise(async () => {
      await mkdir(branchDir, { recursive: true, mode: 0o700 })
      await writeFile(`${file}.tmp`, Buffer.from(bundle.stdout, "base64"), { mode: 0o600 })
      await rename(`${file}.tmp`, file)
    })
    return `kept ${branches.join(", ")} in ${file}`
  }).pipe(Effect.catchAll((error) => Effect.succeed(`could not keep its task branches: ${error.message}`)))
