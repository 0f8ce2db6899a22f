import { type ChildProcess, spawn } from "node:child_process"
import { createWriteStream } from "node:fs"
import { mkdir, writeFile } from "node:fs/promises"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { ControlPlane, NatsAccounts } from "@sam/actors"
import { Consume, Nats } from "@sam/bus"
import { Effect, Layer, Redacted } from "effect"
import { stopChild } from "./ChildProcess.js"

export interface LocalProviderOptions {
  /** nodes live in `<dataDir>/nodes/<nodeId>/` (credentials, workspaces, log) */
  readonly dataDir: string
  readonly natsUrl: string
  /** how long a node's first JWT lives (default `SAM_NODE_CREDS_TTL_SECONDS`, else 6 hours); it renews itself */
  readonly credsTtlSeconds?: number
  /** `auto` uses Docker when an engine with the workspace image answers, else host processes */
  readonly runtime?: "auto" | "docker" | "host"
  /** extra environment for the vm-agents (tests shorten heartbeats and grace periods) */
  readonly env?: Readonly<Record<string, string>>
}

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)))

/**
 * The local provider: a node is a vm-agent child process on this machine, with NATS credentials of
 * that node's own account (ADR 0016), short-lived (it renews them itself), and its durable command
 * consumer created here. Closing the scope
 * stops every node it started.
 */
export const layer = (options: LocalProviderOptions) =>
  Layer.scoped(
    ControlPlane.NodeProvider,
    Effect.gen(function* () {
      const nats = yield* Nats
      const accounts = yield* NatsAccounts.NatsAccounts
      const ttlSeconds = options.credsTtlSeconds ?? NatsAccounts.nodeCredsTtlSeconds()
      const children = new Map<string, ChildProcess>()
      yield* Effect.addFinalizer(() =>
        Effect.forEach([...children.values()], (child) => stopChild(child), { concurrency: "unbounded", discard: true })
      )
      const provision = (nodeId: string) =>
        Effect.gen(function* () {
          const running = children.get(nodeId)
          if (running !== undefined && running.exitCode === null && running.signalCode === null) return
          const dir = join(options.dataDir, "nodes", nodeId)
          const user = yield* accounts.nodeCredentials(nodeId, ttlSeconds)
          const credsFile = join(dir, "node.creds")
          yield* Effect.promise(async () => {
            await mkdir(dir, { recursive: true, mode: 0o700 })
            await writeFile(credsFile, Redacted.value(user.creds), { mode: 0o600 })
          })
          yield* Consume.ensureConsumer("SAM_NODE", Consume.nodeConsumer(nodeId)).pipe(
            Effect.provideService(Nats, nats)
          )
          const log = createWriteStream(join(dir, "vm-agent.log"), { flags: "a", mode: 0o600 })
          const child = spawn(process.execPath, ["--import", "tsx", join(repoRoot, "vm-agent/src/main.ts")], {
            cwd: repoRoot,
            env: {
              ...process.env,
              SAM_NODE_ID: nodeId,
              SAM_NATS_URL: options.natsUrl,
              SAM_NATS_CREDS: credsFile,
              SAM_NODE_DATA_DIR: join(dir, "data"),
              SAM_NODE_RUNTIME: options.runtime ?? "auto",
              ...options.env
            },
            stdio: ["ignore", "pipe", "pipe"]
          })
          child.stdout?.pipe(log)
          child.stderr?.pipe(log)
          children.set(nodeId, child)
          yield* Effect.logInfo(`local node ${nodeId} started (pid ${child.pid}; log ${join(dir, "vm-agent.log")})`)
        })
      return { provision }
    })
  )
