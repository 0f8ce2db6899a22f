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
