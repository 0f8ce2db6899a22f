import { NodeRuntime } from "@effect/platform-node"
import { Accounts, natsLayer, Subjects } from "@sam/bus"
import { Effect, Layer } from "effect"
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
    yield* Effect.forkScoped(Renewal.run(settings, renewable))
    yield* Effect.forkScoped(BootLogReport.run(settings.nodeId, env.SAM_BOOT_LOG))
    return yield* run(settings)
  }).pipe(Effect.scoped, Effect.provide(layers))
})

program.pipe(NodeRuntime.runMain)
