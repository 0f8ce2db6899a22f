import { mkdir, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Effect } from "effect"
import { type RestartPolicy, supervisedServer } from "./ChildProcess.js"
import { loadOrCreate, serverConfig } from "./NatsAuth.js"
import { StackError } from "./StackError.js"

export interface NatsServerOptions {
  /** holds keys.json, nats.conf, nats.log and jetstream/ */
  readonly dir: string
  readonly host: string
  readonly port: number
  /** NATS over WebSocket on this loopback port, for the gateway's `/nats` (ADR 0027) */
  readonly websocketPort?: number
  readonly binary?: string
  /** how it is restarted when it dies (default `defaultRestartPolicy`) */
  readonly restart?: RestartPolicy
}

/**
 * nats-server in operator mode with JetStream, as a scoped child process. Keys are created on first
 * start and reused after; stopping the scope stops the server. If it dies, it is started again on the
 * same store and port (`supervisedServer`); `failed` fails when it cannot be.
 */
export const start = Effect.fn("NatsServer.start")(function* (options: NatsServerOptions) {
  const auth = yield* loadOrCreate(options.dir)
  const storeDir = join(options.dir, "jetstream")
  const configFile = join(options.dir, "nats.conf")
  const accountsDir = join(options.dir, "accounts")
  yield* Effect.tryPromise({
    try: async () => {
      await mkdir(storeDir, { recursive: true })
      await mkdir(accountsDir, { recursive: true, mode: 0o700 })
      await writeFile(
        configFile,
        serverConfig(auth, {
          host: options.host,
          port: options.port,
          storeDir,
          accountsDir,
          ...(options.websocketPort === undefined ? {} : { websocketPort: options.websocketPort })
        }),
        {
          mode: 0o600
        }
      )
    },
    catch: (cause) => new StackError({ step: "nats", message: `cannot write ${configFile}: ${cause}`, cause })
  })
  const server = yield* supervisedServer(
    {
      name: "nats-server",
      step: "nats",
      command: options.binary ?? process.env.SAM_NATS_SERVER_BIN ?? "nats-server",
      args: ["-c", configFile],
      logFile: join(options.dir, "nats.log"),
      readyWhen: /Server is ready/,
      missingHint: "Install it with: apt-get install -y nats-server (or set SAM_NATS_SERVER_BIN)"
    },
    options.restart
  )
  return {
    auth,
    url: `nats://${options.host}:${options.port}`,
    /** `127.0.0.1:<port>` of its WebSocket listener, when it has one */
    websocket: options.websocketPort === undefined ? undefined : `127.0.0.1:${options.websocketPort}`,
    configFile,
    pid: server.pid,
    running: server.running,
    failed: server.failed
  }
})
