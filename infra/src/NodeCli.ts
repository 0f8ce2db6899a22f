import { spawn } from "node:child_process"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import * as Api from "@sam/bus/api"
import { Effect } from "effect"
import { out } from "./ApiCli.js"
import * as LocalClient from "./LocalClient.js"
import { StackError } from "./StackError.js"

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)))

/** `sam node token`: a join token of mine (15 minutes, one use) and the commands that use it. */
const token = Effect.gen(function* () {
  const api = yield* LocalClient.api()
  const issued = yield* api.call(Api.NodeBootEndpoints.createJoinToken)
  yield* out(
    `join token for node ${issued.nodeId} (one use, until ${issued.expiresAt}); on the machine, as root:\n\n` +
      `  ${issued.command}\n\nor, from a checkout of SAM on it:\n\n  ${issued.samCommand}\n`
  )
})

/**
 * `sam node join <url> <token>` / `sam node run`: this machine becomes (or runs again as) a node of the
 * token's user, in the foreground, through the same bootstrap exchange as a cloud node (ADR 0027). It
 * is the vm-agent's own `node` command, the one the artifact's `sam` launcher runs.
 */
const vmAgent = (args: ReadonlyArray<string>) =>
  Effect.async<void, StackError>((resume) => {
    const main =
      process.env.SAM_COMPILED === "1"
        ? [join(repoRoot, "dist/vm-agent.mjs")]
        : ["--import", "tsx", join(repoRoot, "vm-agent/src/main.ts")]
    const child = spawn(process.execPath, [...main, "node", ...args], { stdio: "inherit", cwd: repoRoot })
    child.once("error", (e) => resume(Effect.fail(new StackError({ step: "node", message: e.message, cause: e }))))
    child.once("exit", (code, signal) =>
      resume(
        code === 0 || signal === "SIGINT" || signal === "SIGTERM"
          ? Effect.void
          : Effect.fail(new StackError({ step: "node", message: `the vm-agent exited (${code ?? signal})` }))
      )
    )
    return Effect.sync(() => child.kill("SIGTERM"))
  })

export const node = (args: ReadonlyArray<string>) => {
  const [sub, ...rest] = args
  if (sub === "token")
    return token.pipe(
      Effect.mapError(
        (e) => new StackError({ step: "node", message: String((e as { message?: unknown }).message ?? e) })
      )
    )
  if (sub === "join" || sub === "run") return vmAgent([sub, ...rest])
  return Effect.fail(
    new StackError({
      step: "node",
      message:
        "usage: sam node token | sam node join <url> <token> [--dir DIR] [--runtime R] | sam node run [--dir DIR]"
    })
  )
}
