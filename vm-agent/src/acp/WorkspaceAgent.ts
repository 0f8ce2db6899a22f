import { constants } from "node:os"
import { Deferred, Effect, Exit } from "effect"
import type { WorkspaceRuntimeService } from "../runtime/WorkspaceRuntime.js"
import { AgentStartError } from "./AcpErrors.js"
import {
  type AgentExit,
  type AgentProcess,
  type AgentSpawner,
  agentStdio,
  pollGroupGone,
  releaseAgent
} from "./AgentProcess.js"

const signalNames = new Map(Object.entries(constants.signals).map(([name, number]) => [number, name]))

/** A workspace exit code (a signal death is 128 + its number) as an agent exit. */
const exitOf = (code: number): AgentExit => {
  const signal = code > 128 ? signalNames.get(code - 128) : undefined
  return signal === undefined ? { exitCode: code, signal: null } : { exitCode: null, signal }
}

/**
 * Starts agents through the workspace runtime, so that they run where the workspace is: in its container for a
 * Docker workspace. The command's argv and cwd are paths as the workspace sees them; its env is added to the
 * workspace's. The process group is the one the runtime gives the process (its pid inside the container), and
 * is signalled and watched there.
 */
export const workspaceSpawner =
  (runtime: WorkspaceRuntimeService, workspaceId: string): AgentSpawner =>
  (command, output) =>
    Effect.acquireRelease(
      Effect.gen(function* () {
        const proc = yield* runtime
          .spawn(workspaceId, command.argv, { cwd: command.cwd, ...(command.env ? { env: command.env } : {}) })
          .pipe(
            Effect.mapError(
              (error) =>
                new AgentStartError({
                  reason: "spawn",
                  message: error.message,
                  transient: error._tag === "RuntimeFailure"
                })
            )
          )
        const stdio = agentStdio(proc, output)
        const exit = yield* Deferred.make<AgentExit>()
        yield* proc.exitCode.pipe(
          Effect.flatMap((code) => Deferred.done(exit, Exit.succeed(exitOf(code)))),
          Effect.forkDaemon
        )
        const pid = yield* proc.pgid.pipe(
          Effect.catchAllDefect(
            (defect) => new AgentStartError({ reason: "spawn", message: `no process group for the agent: ${defect}` })
          )
        )
        return {
          pid,
          ...stdio,
          exit,
          killGroup: proc.killGroup,
          // each look is an exec into the container: poll less often than on the host
          awaitGroupGone: (timeout) => pollGroupGone(proc.groupAlive, timeout, "25 millis"),
          killSince: proc.killSince,
          awaitGoneSince: (since, timeout) => pollGroupGone(proc.aliveSince(since), timeout, "25 millis")
        } satisfies AgentProcess
      }),
      releaseAgent
    )
