import { NodeRuntime } from "@effect/platform-node"
import { Accounts, Nats, natsLayer, Otlp, Subjects } from "@sam/bus"
import { Cause, Effect, Exit, Layer, Option } from "effect"
import { WebSocket as WsWebSocket } from "ws"
import { AcpSessionHost } from "./acp/AcpSessionHost.js"
import * as BootLogReport from "./node/BootLogReport.js"
import * as Bootstrap from "./node/Bootstrap.js"
import { run } from "./node/Daemon.js"
import { type JoinUsageError, joinEnv } from "./node/Join.js"
import * as NodeConfig from "./node/NodeConfig.js"
import * as Renewal from "./node/Renewal.js"
import { layerAuto, layerDocker, layerHost } from "./runtime/index.js"

/**
 * The vm-agent process: one per node. Settings come from the environment (see NodeConfig.ts); its
 * NATS credentials allow only its own node's subjects.
 */
// NATS over WebSocket (a remote node through the gateway, ADR 0027) needs a WebSocket; Node 20 has none built in.
if (globalThis.WebSocket === undefined) Object.assign(globalThis, { WebSocket: WsWebSocket })

// Stopped in its terminal (`sam node join` or `run`, Ctrl-C) or by a supervisor, it says that it heard, and when it is
// done: its agents and their processes end first, which may take their grace.
for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.once(signal, () => console.error(`vm-agent: ${signal}: stopping (its agents and their processes end first)`))

const program = Effect.gen(function* () {
  // `node join <url> <token>` / `node run`: a machine its owner joins (ADR 0027).
  const given = yield* Effect.try({
    try: () => joinEnv(process.argv.slice(2), process.env) ?? process.env,
    catch: (e) => e as JoinUsageError
  }).pipe(
    Effect.catchAll((e) =>
      Effect.sync(() => {
        process.stderr.write(`${e.message}\n`)
        process.exit(2)
      })
    )
  )
  // A remote node trades its bootstrap token for its credentials first (ADR 0027).
  const env = yield* Bootstrap.prepare(given).pipe(Effect.orDieWith((e) => new Error(e.message)))
  const { settings, creds } = yield* NodeConfig.fromEnv(env)
  const renewable = new Renewal.RenewableCreds(creds)
  const docker = {
    dataDir: settings.dataDir,
    ...(settings.dockerSocket === undefined ? {} : { socketPath: settings.dockerSocket })
  }
  const runtime =
    settings.runtime === "host"
      ? layerHost({ dataDir: settings.dataDir })
      : settings.runtime === "docker"
        ? layerDocker(docker)
        : layerAuto(docker)
  const layers = Layer.mergeAll(
    natsLayer({
      servers: settings.natsUrl,
      creds: renewable.current,
      jsApiPrefix: Accounts.nodeJsApiPrefix,
      name: `vm-agent-${settings.nodeId}`,
      inboxPrefix: Subjects.nodeInboxPrefix(settings.nodeId),
      waitOnFirstConnect: true
    }),
    runtime,
    AcpSessionHost.Default
  )
  return yield* Effect.gen(function* () {
    const { nc } = yield* Nats
    yield* Effect.forkScoped(Renewal.run(settings, renewable))
    yield* Effect.forkScoped(BootLogReport.run(settings.nodeId, env.SAM_BOOT_LOG))
    // The client gives up only when the server refused the node's credentials twice (it retries anything
    // else for ever): nothing this node does can reach the control plane any more, so it stops its work
    // (the daemon's scope ends its agents) instead of running on unseen.
    const given = Effect.promise(() => nc.closed()).pipe(
      Effect.flatMap((error) =>
        Effect.fail(new Renewal.ConnectionGivenUp(error === undefined ? "closed" : String(error)))
      )
    )
    return yield* Effect.raceFirst(run(settings), given)
  }).pipe(Effect.scoped, Effect.provide(layers))
})

program.pipe(
  // spans to an OpenTelemetry collector when OTEL_EXPORTER_OTLP_ENDPOINT says where (issue 12)
  Effect.provide(Otlp.layer("vm-agent")),
  NodeRuntime.runMain({
    teardown: (exit, onExit) => {
      const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
      if (Option.isSome(failure) && failure.value instanceof Renewal.ConnectionGivenUp) {
        console.error(`[nats] ${Renewal.GIVEN_UP}`)
        return onExit(Renewal.GIVEN_UP_EXIT_CODE)
      }
      const interrupted = Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)
      if (interrupted) console.error("vm-agent: stopped")
      onExit(Exit.isFailure(exit) && !interrupted ? 1 : 0)
    }
  })
)
