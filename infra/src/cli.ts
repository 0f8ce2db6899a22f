import { resolve } from "node:path"
import { NodeRuntime } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { Actors, ControlPlane } from "@sam/actors"
import { Domain, makeId, natsLayer } from "@sam/bus"
import { Sql } from "@sam/sql"
import { Cause, Effect, Exit, Layer, Logger, LogLevel, Option } from "effect"
import * as LocalClient from "./LocalClient.js"
import * as LocalProvider from "./LocalProvider.js"
import * as LocalStack from "./LocalStack.js"
import * as OpsCreds from "./OpsCreds.js"
import * as Progress from "./Progress.js"
import { StackError } from "./StackError.js"
import * as TaskCli from "./TaskCli.js"

const USAGE = `usage: sam <command>

  up                     start the local stack (NATS, Postgres, the control plane, local nodes) until Ctrl-C
  creds ops [--out F] [--days N]
                         write a .creds file for the NATS CLI (default .sam/ops.creds, 30 days)
  project create --repo R [--name N] | project list
  task create --project P --prompt "…" [--agent demo] [--mode task|conversation]
                         submit a task and print what the agent does until it ends
  session prompt|cancel|watch sess_… ["prompt"]
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
  const cpNats = natsLayer({ servers: stack.natsUrl, creds: stack.controlPlaneCreds, name: "sam-control-plane" })
  const provider = LocalProvider.layer({
    dataDir: stack.dataDir,
    natsUrl: stack.natsUrl,
    signing: stack.signing,
    runtime: (process.env.SAM_NODE_RUNTIME as "auto" | "docker" | "host" | undefined) ?? "auto"
  })
  const base = Layer.merge(cpNats, Sql.layer(stack.databaseUrl, "sam-control-plane"))
  yield* Layer.launch(
    ControlPlane.layer().pipe(Layer.provide(Layer.merge(provider.pipe(Layer.provide(base)), base)))
  ).pipe(
    Effect.tapErrorCause((cause) => Effect.logError("the control plane stopped", cause)),
    Effect.forkScoped
  )
  yield* progress.step(
    `control plane: project, task, node, workspace and session actors; local nodes in ${stack.dataDir}/nodes`
  )
  yield* progress.done(
    `SAM is up: NATS ${stack.natsUrl} · Postgres ${stack.databaseDisplayUrl} · data ${stack.dataDir}\n` +
      `Inspect with: ./sam creds ops && nats --server ${stack.natsUrl} --creds ${stack.dataDir}/ops.creds stream ls\n` +
      "Press Ctrl-C to stop."
  )
  yield* Effect.addFinalizer(() => Effect.sync(() => process.stdout.write("\nStopping SAM…\n")))
  return yield* Effect.never
}).pipe(Effect.scoped, Effect.provide(Progress.console))

/** A command against a running `sam up`, with its NATS and Postgres. */
const client = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(Effect.provide(LocalClient.layer(LocalStack.defaults())))

const positional = (args: ReadonlyArray<string>) =>
  args.filter((a, i) => !a.startsWith("--") && !args[i - 1]?.startsWith("--"))
const flags = (args: ReadonlyArray<string>) =>
  Object.fromEntries(args.flatMap((a, i) => (a.startsWith("--") ? [[a.slice(2), args[i + 1]]] : [])))

const project = (args: ReadonlyArray<string>) =>
  client(
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const owner = yield* LocalClient.localOwner(LocalStack.defaults().dataDir)
      if (args[0] === "list") {
        const rows = yield* sql<{ id: string; name: string; repoUrl: string }>`
          SELECT id, name, repo_url FROM projects ORDER BY created_at`
        yield* Effect.sync(() => process.stdout.write(rows.map((r) => `${r.id}  ${r.name}  ${r.repoUrl}\n`).join("")))
        return
      }
      const repo = flag(args, "--repo")
      if (args[0] !== "create" || repo === undefined) {
        return yield* new StackError({
          step: "project",
          message: "usage: sam project create --repo <path or URL> [--name N] | sam project list"
        })
      }
      const id = makeId("proj")
      const name = flag(args, "--name") ?? repo.split("/").filter(Boolean).pop() ?? "project"
      const create = yield* Effect.try({
        try: () =>
          Domain.ControlProtocol.ProjectCreate.make({ projectId: id, ownerId: owner as never, name, repoUrl: repo }),
        catch: (e) =>
          new StackError({ step: "project", message: `invalid project: ${e instanceof Error ? e.message : e}` })
      })
      yield* Actors.ask(ControlPlane.ProjectRef, id, create)
      yield* Effect.sync(() => process.stdout.write(`${id}\n`))
    })
  )

const task = (args: ReadonlyArray<string>) =>
  args[0] === "create"
    ? client(
        LocalClient.localOwner(LocalStack.defaults().dataDir).pipe(
          Effect.flatMap((owner) => TaskCli.createTask(flags(args.slice(1)), owner))
        )
      )
    : Effect.fail(
        new StackError({
          step: "task",
          message: 'usage: sam task create --project proj_… --prompt "…" [--agent demo] [--mode task|conversation]'
        })
      )

const session = (args: ReadonlyArray<string>) => {
  const [verb, id, ...rest] = positional(args)
  if (id === undefined)
    return Effect.fail(
      new StackError({ step: "session", message: 'usage: sam session prompt|cancel|watch sess_… ["prompt"]' })
    )
  switch (verb) {
    case "prompt":
      return rest[0] === undefined
        ? Effect.fail(new StackError({ step: "session", message: 'usage: sam session prompt sess_… "prompt"' }))
        : client(TaskCli.promptSession(id, rest.join(" ")))
    case "cancel":
      return client(TaskCli.cancelSession(id))
    case "watch":
      return client(TaskCli.watchSession(id))
    default:
      return Effect.fail(new StackError({ step: "session", message: `unknown session command ${verb}` }))
  }
}

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

const asStackError = (step: string) => (error: unknown) =>
  error instanceof StackError
    ? error
    : new StackError({ step, message: error instanceof Error ? error.message : String(error), cause: error })

const main = (args: ReadonlyArray<string>): Effect.Effect<void, StackError> => {
  switch (args[0]) {
    case "up":
      return up
    case "actors":
      return Effect.flatMap(
        Effect.promise(() => import("./ActorsStatus.js")),
        (module) => module.actorsStatus
      )
    case "project":
      return project(args.slice(1)).pipe(Effect.mapError(asStackError("project")))
    case "task":
      return task(args.slice(1)).pipe(Effect.mapError(asStackError("task")))
    case "session":
      return session(args.slice(1)).pipe(Effect.mapError(asStackError("session")))
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
