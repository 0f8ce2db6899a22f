/**
 * The commands that run or read the stack itself (`up`, `owner password`, `creds ops`): loaded by the
 * CLI only for them, so a client command (`sam task list`) does not load the control plane, the gateway
 * and the servers' code (issue 12: a CLI command in a fraction of a second).
 */
import { readFile } from "node:fs/promises"
import { join, resolve } from "node:path"
import { ControlPlane, NatsAccounts } from "@sam/actors"
import { natsLayer, Otlp } from "@sam/bus"
import { Auth, Gateway, LocalOwner } from "@sam/gateway"
import { Sql } from "@sam/sql"
import { Effect, Either, Fiber, Layer, Option, Redacted } from "effect"
import * as WebBuild from "../../web/build.js"
import * as NodeBoot from "./cloud/NodeBoot.js"
import * as DataLock from "./DataLock.js"
import * as HetznerProvider from "./hetzner/HetznerProvider.js"
import * as HetznerTokenCheck from "./hetzner/TokenCheck.js"
import * as Leftovers from "./Leftovers.js"
import * as LocalProvider from "./LocalProvider.js"
import * as LocalStack from "./LocalStack.js"
import * as MasterKey from "./MasterKey.js"
import * as NodeProviders from "./NodeProviders.js"
import * as OpsCreds from "./OpsCreds.js"
import * as Progress from "./Progress.js"
import { StackError } from "./StackError.js"

/** The outside parties' NATS accounts (nodes, programmatic clients; ADR 0016). */
const accountsLayer = (stack: LocalStack.Stack) =>
  NatsAccounts.layer({ natsUrl: stack.natsUrl, systemCreds: stack.systemCreds, authority: stack.authority })

const startGateway = (stack: LocalStack.Stack) =>
  Effect.gen(function* () {
    const options = {
      ...Gateway.defaults(),
      natsUrl: stack.natsUrl,
      ...(stack.natsWebSocket === undefined ? {} : { natsWebSocket: stack.natsWebSocket })
    }
    // Its own connections, held by this scope (not the control plane's): the gateway serves users.
    const base = Layer.merge(
      natsLayer({ servers: stack.natsUrl, creds: stack.controlPlaneCreds, name: "sam-gateway" }),
      Sql.layer(stack.databaseUrl, "sam-gateway")
    )
    const connections = yield* Layer.build(Layer.merge(base, accountsLayer(stack).pipe(Layer.provide(base)))).pipe(
      Effect.mapError((e) => new StackError({ step: "gateway", message: e.message, cause: e }))
    )
    const { url } = yield* Gateway.start(options).pipe(
      // Cloud tokens are checked with their provider before they are stored (ADR 0026).
      Effect.provide(HetznerTokenCheck.layer()),
      Effect.provide(connections),
      Effect.mapError((e) => {
        const reason = String((e as { cause?: unknown }).cause ?? e)
        return new StackError({
          step: "gateway",
          message: `cannot listen on ${options.host}:${options.port}: ${
            /EADDRINUSE/.test(reason) ? "address already in use" : reason
          } (set SAM_GATEWAY_PORT to use another port)`,
          cause: e
        })
      })
    )
    const owner = yield* LocalOwner.ensure(stack.dataDir).pipe(
      Effect.provide(Auth.Default),
      Effect.provide(connections),
      Effect.mapError((e) => new StackError({ step: "owner", message: `cannot set up the owner account: ${e}` }))
    )
    return { url, owner }
  })

export const up = Effect.gen(function* () {
  const options = LocalStack.defaults()
  // Before anything touches the data directory: a second `sam up` on it must not start its servers.
  yield* DataLock.acquire(options.dataDir)
  yield* Effect.sync(() => process.stdout.write(`Starting SAM (data in ${options.dataDir})\n`))
  const tracing = Otlp.configured(process.env, "control-plane")
  if (tracing._tag !== "Off")
    yield* Effect.sync(() =>
      process.stdout.write(
        tracing._tag === "On"
          ? `  ✓ tracing: spans of sam-control-plane and its vm-agents to ${Otlp.shown(tracing.settings.url)} (OTLP/HTTP JSON${Otlp.describeSampler(tracing.settings.sampler)})\n`
          : `  ! tracing: spans are not exported: ${tracing.reason}\n`
      )
    )
  // A `sam up` killed outright (SIGKILL, the OOM killer) left its servers and nodes running on these ports and data.
  const leftovers = yield* Leftovers.stopLeftovers(options.dataDir)
  if (leftovers.length > 0) {
    yield* Effect.sync(() =>
      process.stdout.write(
        `  ✓ stopped what the last sam up on this directory left running when it was killed: ${leftovers
          .map((p) => `${p.what} (pid ${p.pid}${p.killed ? ", killed" : ""})`)
          .join(", ")}\n`
      )
    )
  }
  yield* Effect.sync(() => Leftovers.recordIn(options.dataDir))
  // The terminal it runs in closed: stop as on Ctrl-C. (By default SIGHUP ended this process alone, and the servers,
  // which take SIGHUP as "reload the configuration", ran on.)
  yield* Effect.sync(() => process.once("SIGHUP", () => process.kill(process.pid, "SIGTERM")))
  // Finalizers run in reverse: this one last, after every server has stopped.
  yield* Effect.addFinalizer(() => Effect.sync(() => process.stdout.write("SAM stopped.\n")))
  const stack = yield* LocalStack.start(options)
  yield* MasterKey.ensure(stack.dataDir)
  const progress = yield* Progress.Progress
  const cpNats = natsLayer({ servers: stack.natsUrl, creds: stack.controlPlaneCreds, name: "sam-control-plane" })
  const local = LocalProvider.layer({
    dataDir: stack.dataDir,
    natsUrl: stack.natsUrl,
    runtime: (process.env.SAM_NODE_RUNTIME as "auto" | "docker" | "host" | undefined) ?? "auto"
  })
  // Hetzner nodes of users who set a token (ADR 0026), booted to reach this control plane (ADR 0027).
  const gatewayDefaults = Gateway.defaults()
  const hetzner = HetznerProvider.layer().pipe(
    Layer.provide(
      NodeBoot.layer(NodeBoot.optionsFromEnv(process.env, `http://${gatewayDefaults.host}:${gatewayDefaults.port}`))
    )
  )
  const provider = NodeProviders.layer(local, hetzner)
  const connections = Layer.merge(cpNats, Sql.layer(stack.databaseUrl, "sam-control-plane"))
  const base = Layer.merge(connections, accountsLayer(stack).pipe(Layer.provide(connections)))
  const controlPlane = yield* Layer.launch(
    ControlPlane.layer().pipe(Layer.provide(Layer.merge(provider.pipe(Layer.provide(base)), base)))
  ).pipe(
    Effect.tapErrorCause((cause) => Effect.logError("the control plane stopped", cause)),
    Effect.forkDaemon
  )
  // Its stop hands leases back and drains over NATS: with NATS or Postgres down that only times out,
  // so it gets a few seconds, then `sam up` goes on stopping (the provider kills its nodes on exit).
  yield* Effect.addFinalizer(() => {
    const limit = stack.serversRunning() ? "10 seconds" : "3 seconds"
    return Fiber.interrupt(controlPlane).pipe(
      Effect.interruptible,
      Effect.timeout(limit),
      Effect.catchAll(() => Effect.logWarning(`the control plane did not stop within ${limit}; leaving it`))
    )
  })
  yield* progress.step(
    `control plane: project, task, node, workspace and session actors; local nodes in ${stack.dataDir}/nodes`
  )
  // The web app the gateway serves at `/`: built again only when its sources changed.
  const web = yield* Effect.either(
    Effect.tryPromise(() =>
      WebBuild.ensureBuilt({
        onBuild: () => process.stdout.write("  … building the web app (its sources changed since the last build)\n")
      })
    )
  )
  if (Either.isRight(web)) {
    yield* progress.step(
      web.right.built
        ? `web app built in ${(web.right.ms / 1000).toFixed(1)} s (web/dist)`
        : "web app up to date (web/dist)"
    )
  } else {
    yield* Effect.sync(() =>
      process.stdout.write(`  ✗ web app not built (the API and feed run without it): ${web.left.cause}\n`)
    )
  }
  const { url, owner } = yield* startGateway(stack)
  yield* progress.step(
    `gateway on ${url} (HTTP API ${url}/api/v1, OpenAPI ${url}/api/v1/openapi.json, feed /api/v1/feed)`
  )
  const password =
    owner.newPassword === undefined
      ? undefined
      : yield* LocalOwner.presentPassword(owner.newPassword, stack.dataDir, process.stdout.isTTY === true)
  yield* progress.step(
    password === undefined
      ? `owner account: login owner; the sam CLI signs in with ${owner.cliTokenFile}`
      : password._tag === "Show"
        ? `owner account created: login owner, password ${password.password}\n` +
          "    (shown once; `./sam owner password` sets a new one); " +
          `the sam CLI signs in with ${owner.cliTokenFile}`
        : `owner account created: login owner, password in ${password.file} (mode 0600; not printed, as this ` +
          `output is not a terminal); the sam CLI signs in with ${owner.cliTokenFile}`
  )
  yield* progress.done(
    `SAM is up: ${url} · NATS ${stack.natsUrl} · Postgres ${stack.databaseDisplayUrl} · data ${stack.dataDir}\n` +
      `Try: ./sam project list · curl -H "Authorization: Bearer $(cat ${owner.cliTokenFile})" ${url}/api/v1/me\n` +
      `Inspect with: ./sam creds ops && nats --server ${stack.natsUrl} --creds ${stack.dataDir}/ops.creds stream ls\n` +
      "Press Ctrl-C to stop."
  )
  yield* Effect.addFinalizer(() => Effect.sync(() => process.stdout.write("\nStopping SAM…\n")))
  // Runs until Ctrl-C, or until nats-server or Postgres died and could not be restarted.
  return yield* stack.failed
}).pipe(
  Effect.scoped,
  Effect.provide(Progress.console),
  // spans to an OpenTelemetry collector when OTEL_EXPORTER_OTLP_ENDPOINT says where (issue 12); the local nodes'
  // vm-agents inherit the variables and export theirs
  Effect.provide(Otlp.layer("control-plane", { quiet: true }))
)

/** Postgres of a running `sam up`, with the generated password from the data directory (operator commands). */
export const sqlLayer = (options: LocalStack.StackOptions) =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      const file = join(options.dataDir, "postgres", "password")
      const password = yield* Effect.promise(() =>
        readFile(file, "utf8").then(
          (t) => t.trim(),
          () => undefined
        )
      )
      if (password === undefined) {
        return yield* new StackError({
          step: "connect",
          message: `cannot read ${file}: has \`./sam up\` run with this data directory?`
        })
      }
      const url = `postgres://sam:${encodeURIComponent(password)}@${options.host}:${options.pgPort}/${options.database}`
      return Sql.layer(Redacted.make(url), "sam-cli")
    })
  ).pipe(
    Layer.catchAll((error) =>
      Layer.fail(
        error instanceof StackError
          ? error
          : new StackError({ step: "connect", message: `${error.message}: is \`./sam up\` running?`, cause: error })
      )
    )
  )

/**
 * The bus of a running `sam up`, with the control plane's credentials from the data directory; none when it is
 * not running (then no gateway has connections to tell anything).
 */
const runningBus = (options: LocalStack.StackOptions) =>
  Effect.gen(function* () {
    const creds = yield* Effect.promise(() =>
      readFile(join(options.dataDir, "nats", "control-plane.creds"), "utf8").catch(() => undefined)
    )
    if (creds === undefined) return Option.none()
    const servers = `nats://${options.host}:${options.natsPort}`
    return yield* Layer.build(natsLayer({ servers, creds: Redacted.make(creds), name: "sam-owner-password" })).pipe(
      Effect.timeout("5 seconds"),
      Effect.option
    )
  })

export const ownerPassword = Effect.gen(function* () {
  const bus = yield* runningBus(LocalStack.defaults())
  // with the bus, the sessions signed in with the old password are signed out of their open feeds too
  const password = yield* LocalOwner.resetPassword().pipe(
    Option.isSome(bus) ? Effect.provide(bus.value) : (effect) => effect,
    Effect.provide(sqlLayer(LocalStack.defaults())),
    Effect.mapError((e) => (e instanceof StackError ? e : new StackError({ step: "owner", message: String(e) })))
  )
  if (password === undefined) {
    return yield* new StackError({ step: "owner", message: "there is no owner account yet: run `./sam up` first" })
  }
  const shown = yield* LocalOwner.presentPassword(
    password,
    LocalStack.defaults().dataDir,
    process.stdout.isTTY === true
  )
  yield* Effect.sync(() =>
    process.stdout.write(
      shown._tag === "Show"
        ? `new password for login owner: ${shown.password}\n(shown once; the old one no longer works, and whoever ` +
            "signed in with it is signed out)\n"
        : `new password for login owner written to ${shown.file} (mode 0600); the old one no longer ` +
            "works, and whoever signed in with it is signed out\n"
    )
  )
}).pipe(Effect.scoped)

const flag = (args: ReadonlyArray<string>, name: string) => {
  const at = args.indexOf(name)
  return at >= 0 ? args[at + 1] : undefined
}

export const credsOps = (args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const { dataDir, natsPort } = LocalStack.defaults()
    const out = resolve(flag(args, "--out") ?? `${dataDir}/ops.creds`)
    const days = Number(flag(args, "--days") ?? 30)
    if (!Number.isInteger(days) || days < 1 || days > 3650) {
      return yield* new StackError({ step: "creds", message: "--days must be a whole number from 1 to 3650" })
    }
    const written = yield* OpsCreds.write(dataDir, out, days)
    const url = `nats://127.0.0.1:${natsPort}`
    yield* Effect.sync(() =>
      process.stdout.write(
        `wrote ${written.file} (operator, expires ${written.expiresAt?.toISOString()}; keep it secret)\n` +
          `  nats --server ${url} --creds ${written.file} stream ls\n` +
          `  nats --server ${url} --creds ${written.file} kv ls\n`
      )
    )
  })
