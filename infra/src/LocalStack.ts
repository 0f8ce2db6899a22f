import { mkdir, writeFile } from "node:fs/promises"
import { createServer } from "node:net"
import { join } from "node:path"
import { Accounts, Credentials, Nats, natsLayer, Provision } from "@sam/bus"
import { Migrations, Sql } from "@sam/sql"
import { Effect, Redacted } from "effect"
import { defaultRestartPolicy } from "./ChildProcess.js"
import * as DataDir from "./DataDir.js"
import * as NatsServer from "./NatsServer.js"
import * as Postgres from "./Postgres.js"
import { Progress } from "./Progress.js"
import type { StackOptions } from "./StackDefaults.js"
import { StackError } from "./StackError.js"

export { defaults, type StackOptions } from "./StackDefaults.js"

/** What a running stack offers to the processes started on it. */
export interface Stack {
  readonly dataDir: string
  readonly natsUrl: string
  /** `127.0.0.1:<port>` of NATS's WebSocket listener, for the gateway's `/nats` (ADR 0027) */
  readonly natsWebSocket?: string
  /** a `.creds` file with full rights in the SAM account, for control-plane processes */
  readonly controlPlaneCredsFile: string
  readonly controlPlaneCreds: Redacted.Redacted<string>
  readonly signing: Credentials.SigningAccount
  /** makes the outside parties' accounts and users (nodes, programmatic clients: ADR 0016) */
  readonly authority: Accounts.Authority
  /** a system-account user that may push account JWTs and nothing else */
  readonly systemCreds: Redacted.Redacted<string>
  readonly databaseUrl: Redacted.Redacted<string>
  readonly databaseDisplayUrl: string
  readonly databaseUrlFor: (database: string) => Redacted.Redacted<string>
  /** the servers' current pids (they change when one is restarted) */
  readonly pids: () => { readonly nats: number | undefined; readonly postgres: number | undefined }
  /** whether nats-server and Postgres both run now */
  readonly serversRunning: () => boolean
  /** fails when nats-server or Postgres died and could not be restarted (the stack should stop) */
  readonly failed: Effect.Effect<never, StackError>
}

const CONTROL_PLANE_CREDS_DAYS = 365

const freeLoopbackPort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    server.close(() => resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0)))
  })
})

/**
 * The whole local stack in one scope: NATS (operator mode, JetStream) and Postgres under one data
 * directory, migrations applied, bus topology provisioned. A server that dies is restarted (see
 * `failed`). Closing the scope stops both servers.
 */
export const start = Effect.fn("LocalStack.start")(function* (options: StackOptions) {
  const progress = yield* Progress
  const natsDir = join(options.dataDir, "nats")
  yield* Effect.tryPromise({
    try: () => mkdir(options.dataDir, { recursive: true, mode: 0o755 }),
    catch: (cause) => new StackError({ step: "data", message: `cannot create ${options.dataDir}: ${cause}`, cause })
  })

  const restart = { ...defaultRestartPolicy, maxAttempts: options.serverRestarts ?? defaultRestartPolicy.maxAttempts }
  const nats = yield* NatsServer.start({
    dir: natsDir,
    host: options.host,
    port: options.natsPort,
    ...(options.natsWebSocketPort === undefined
      ? {}
      : {
          websocketPort: options.natsWebSocketPort === "auto" ? yield* freeLoopbackPort : options.natsWebSocketPort
        }),
    restart
  })
  yield* progress.step(
    `nats-server on ${nats.url} (JetStream, operator mode; keys ${nats.auth.created ? "created" : "reused"} in ${natsDir})`
  )

  const controlPlane = yield* Credentials.mintUser(nats.auth.signing, "control-plane", Credentials.adminPermissions, {
    expiresInSeconds: CONTROL_PLANE_CREDS_DAYS * 86_400
  }).pipe(Effect.mapError((e) => new StackError({ step: "nats", message: e.message, cause: e })))
  const controlPlaneCredsFile = join(natsDir, "control-plane.creds")
  yield* Effect.tryPromise({
    try: () => writeFile(controlPlaneCredsFile, Redacted.value(controlPlane.creds), { mode: 0o600 }),
    catch: (cause) => new StackError({ step: "nats", message: `cannot write ${controlPlaneCredsFile}`, cause })
  })

  // A user of the system account that can push account JWTs, and nothing else. The SAM account JWT is
  // pushed once now: the full resolver keeps pushed JWTs, and one stored earlier must not win.
  const system = yield* Credentials.mintUser(nats.auth.systemSigning, "sam-accounts", Accounts.systemUserPermissions, {
    expiresInSeconds: CONTROL_PLANE_CREDS_DAYS * 86_400
  }).pipe(Effect.mapError((e) => new StackError({ step: "nats", message: e.message, cause: e })))
  yield* Effect.gen(function* () {
    const { nc } = yield* Nats
    yield* Accounts.pushAccount(nc, nats.auth.samAccountJwt)
  }).pipe(
    Effect.provide(natsLayer({ servers: nats.url, creds: system.creds, name: "sam-up-accounts" })),
    Effect.mapError(
      (e) => new StackError({ step: "nats", message: `cannot update the SAM account: ${e.message}`, cause: e })
    )
  )

  const pg = yield* Postgres.start({
    dir: join(options.dataDir, "postgres"),
    port: options.pgPort,
    database: options.database,
    restart
  })
  if (pg.granted.length > 0) {
    yield* progress.step(
      `let the postgres user traverse ${pg.granted.join(", ")} (chmod o+x), as Postgres refuses root`
    )
  }
  yield* progress.step(`postgres on ${pg.displayUrl} (cluster ${pg.created ? "created" : "reused"})`)
  yield* DataDir.secure(options.dataDir)

  const applied = yield* Migrations.migrate().pipe(
    Effect.provide(Sql.layer(pg.url, "sam-up")),
    Effect.mapError((e) => new StackError({ step: "migrations", message: `migrations failed: ${e.message}`, cause: e }))
  )
  yield* progress.step(
    applied.length === 0
      ? `migrations up to date (${Object.keys(Migrations.migrations).length})`
      : `migrations applied: ${applied.map(([id, name]) => `${String(id).padStart(4, "0")}_${name}`).join(", ")}`
  )

  const topology = yield* Effect.gen(function* () {
    yield* Nats
    return yield* Provision.provision()
  }).pipe(
    Effect.provide(natsLayer({ servers: nats.url, creds: controlPlane.creds, name: "sam-up" })),
    Effect.mapError((e) => new StackError({ step: "topology", message: e.message, cause: e }))
  )
  const byAction = (action: Provision.ProvisionAction) => topology.filter((r) => r.action === action).map((r) => r.name)
  const created = byAction("created")
  const updated = byAction("updated")
  yield* progress.step(
    `bus topology: ${topology.length} streams and buckets (${[
      created.length > 0 ? `created ${created.join(", ")}` : "",
      updated.length > 0 ? `updated ${updated.join(", ")}` : "",
      created.length + updated.length < topology.length
        ? `${topology.length - created.length - updated.length} unchanged`
        : ""
    ]
      .filter(Boolean)
      .join("; ")})`
  )

  // The control plane, the gateway and local nodes start here, on this stack (later issues).

  return {
    dataDir: options.dataDir,
    natsUrl: nats.url,
    ...(nats.websocket === undefined ? {} : { natsWebSocket: nats.websocket }),
    controlPlaneCredsFile,
    controlPlaneCreds: controlPlane.creds,
    signing: nats.auth.signing,
    authority: nats.auth.authority,
    systemCreds: system.creds,
    databaseUrl: pg.url,
    databaseDisplayUrl: pg.displayUrl,
    databaseUrlFor: pg.adminUrl,
    pids: () => ({ nats: nats.pid(), postgres: pg.pid() }),
    serversRunning: () => nats.running() && pg.running(),
    failed: Effect.raceFirst(nats.failed, pg.failed)
  } satisfies Stack
})
