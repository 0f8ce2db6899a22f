import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Exit, Layer, Logger, LogLevel, Option } from "effect"
import type { StackError } from "./StackError.js"

/**
 * Exit 0 for a finished command or a requested stop (Ctrl-C), 1 for any failure, said once on stderr. The
 * process exits once its output is written rather than when nothing keeps it alive: an idle
 * keep-alive connection to the gateway held a finished `sam task list` for another 76 ms (issue 12).
 */
const teardown = <E, A>(exit: Exit.Exit<E, A>, onExit: (code: number) => void) => {
  const code = Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause) ? 1 : 0
  onExit(code)
  process.stdout.write("", () => process.stderr.write("", () => process.exit(code)))
}

/** Runs a CLI's command line to its end: the full CLI (cli.ts) and the gateway's client commands (client.ts). */
export const runCli = (main: (args: ReadonlyArray<string>) => Effect.Effect<void, StackError>) =>
  main(process.argv.slice(2)).pipe(
    Effect.tapErrorCause((cause) =>
      Effect.sync(() => {
        if (Cause.isInterruptedOnly(cause)) return
        const failure = Cause.failureOption(cause)
        process.stderr.write(
          Option.isSome(failure)
            ? `\n✗ ${failure.value.step}: ${failure.value.message}\n`
            : `\n✗ ${Cause.pretty(cause)}\n`
        )
      })
    ),
    Effect.provide(Layer.merge(Logger.pretty, Logger.minimumLogLevel(LogLevel.Info))),
    NodeRuntime.runMain({ disableErrorReporting: true, teardown })
  )
