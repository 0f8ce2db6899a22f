import { resolve } from "node:path"
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Effect, Exit, Layer, Logger, LogLevel, Option } from "effect"
import * as LocalStack from "./LocalStack.js"
import * as OpsCreds from "./OpsCreds.js"
import * as Progress from "./Progress.js"
import { StackError } from "./StackError.js"

const USAGE = `usage: sam <command>

  up                     start the local stack (NATS + Postgres, later the control plane) until Ctrl-C
  creds ops [--out F] [--days N]
                         write a .creds file for the NATS CLI (default .sam/ops.creds, 30 days)
  actors                 the actor runtime's shard owners, epochs, pending commands and dead letters
  test                   run the whole test suite (lint, types, tests) on servers of its own

environment: SAM_DATA_DIR (.sam), SAM_NATS_PORT (4222), SAM_PG_PORT (54320)`

const flag = (args: ReadonlyArray<string>, name: string) => {
  const at = args.indexOf(name)
  return at >= 0 ? args[at + 1] : undefined
}

const up = Effect.gen(function* () {
  const options = LocalStack.defaults()
  yield* Effect.sync(() => process.stdout.write(`Starting SAM (data in ${options.dataDir})\n`))
  // Finalizers run in reverse: this one last, after every server has stopped.
  yield* Effect.addFinalizer(() => Effect.sync(() => process.stdout.write("SAM stopped.\n")))
  const stack = yield* LocalStack.start(options)
  const progress = yield* Progress.Progress
  yield* progress.done(
    `SAM is up: NATS ${stack.natsUrl} · Postgres ${stack.databaseDisplayUrl} · data ${stack.dataDir}\n` +
      `Inspect with: ./sam creds ops && nats --server ${stack.natsUrl} --creds ${stack.dataDir}/ops.creds stream ls\n` +
      "Press Ctrl-C to stop."
  )
  yield* Effect.addFinalizer(() => Effect.sync(() => process.stdout.write("\nStopping SAM…\n")))
  return yield* Effect.never
}).pipe(Effect.scoped, Effect.provide(Progress.console))

const credsOps = (args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const { dataDir } = LocalStack.defaults()
    const out = resolve(flag(args, "--out") ?? `${dataDir}/ops.creds`)
    const days = Number(flag(args, "--days") ?? 30)
    if (!Number.isInteger(days) || days < 1 || days > 3650) {
      return yield* new StackError({ step: "creds", message: "--days must be a whole number from 1 to 3650" })
    }
    const written = yield* OpsCreds.write(dataDir, out, days)
    const url = `nats://127.0.0.1:${LocalStack.defaults().natsPort}`
    yield* Effect.sync(() =>
      process.stdout.write(
        `wrote ${written.file} (operator, expires ${written.expiresAt?.toISOString()}; keep it secret)\n` +
          `  nats --server ${url} --creds ${written.file} stream ls\n` +
          `  nats --server ${url} --creds ${written.file} kv ls\n`
      )
    )
  })

const main = (args: ReadonlyArray<string>): Effect.Effect<void, StackError> => {
  switch (args[0]) {
    case "up":
      return up
    case "actors":
      return Effect.flatMap(
        Effect.promise(() => import("./ActorsStatus.js")),
        (module) => module.actorsStatus
      )
    case "creds":
      if (args[1] === "ops") return credsOps(args.slice(2))
      return Effect.fail(
        new StackError({ step: "cli", message: `unknown creds kind ${args[1] ?? "(none)"}; try: sam creds ops` })
      )
    case undefined:
    case "help":
    case "--help":
      return Effect.sync(() => process.stdout.write(`${USAGE}\n`))
    default:
      return Effect.fail(new StackError({ step: "cli", message: `unknown command ${args[0]}\n\n${USAGE}` }))
  }
}

/** Exit 0 for a finished command or a requested stop (Ctrl-C), 1 for any failure, said once on stderr. */
const teardown = <E, A>(exit: Exit.Exit<E, A>, onExit: (code: number) => void) =>
  onExit(Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause) ? 1 : 0)

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
