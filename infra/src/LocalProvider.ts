import { type ChildProcess, spawn } from "node:child_process"
import { createWriteStream } from "node:fs"
import { mkdir, writeFile } from "node:fs/promises"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { SqlClient } from "@effect/sql"
import { ControlPlane, NatsAccounts } from "@sam/actors"
import { Consume, Nats } from "@sam/bus"
import { Effect, Either, Fiber, Layer, Redacted } from "effect"
import { backoff, exitReason, type RestartPolicy, stopChild } from "./ChildProcess.js"
import { diesWithParent } from "./Host.js"
import * as Leftovers from "./Leftovers.js"

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
  /** how a vm-agent that exits is started again (default: 1 s, 2 s, 4 s… up to 30 s; reset after 60 s up) */
  readonly restart?: Omit<RestartPolicy, "maxAttempts">
}

const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)))

const defaultRestart: Omit<RestartPolicy, "maxAttempts"> = { firstDelayMs: 1_000, maxDelayMs: 30_000, stableMs: 60_000 }

interface Running {
  readonly child: ChildProcess
  readonly startedAt: number
  readonly exited: Promise<string>
}

/**
 * The local provider: a node is a vm-agent child process on this machine, with NATS credentials of
 * that node's own account (ADR 0016), short-lived (it renews them itself), and its durable command
 * consumer created here. A vm-agent that exits is started again with backoff and fresh credentials
 * (its old ones may have expired), unless its node is being destroyed or its account is revoked
 * (ADR 0020). Closing the scope stops every node it started, and none is restarted then.
 */
export const layer = (options: LocalProviderOptions) =>
  Layer.scoped(
    ControlPlane.NodeProvider,
    Effect.gen(function* () {
      const nats = yield* Nats
      const sql = yield* SqlClient.SqlClient
      const accounts = yield* NatsAccounts.NatsAccounts
      const scope = yield* Effect.scope
      const ttlSeconds = options.credsTtlSeconds ?? NatsAccounts.nodeCredsTtlSeconds()
      const policy = options.restart ?? defaultRestart
      const children = new Map<string, Running>()
      const supervisors = new Map<string, Fiber.RuntimeFiber<void>>()
      let stopping = false
      // Starts under way: the finalizer takes every permit, so it waits for them (each refuses once `stopping` is set,
      // or has put its vm-agent in `children` before the finalizer looks there).
      const STARTS = 1_000
      const starts = yield* Effect.makeSemaphore(STARTS)
      const refuseWhenStopping = Effect.suspend(() =>
        stopping ? Effect.fail("the local provider is stopping: no vm-agent starts now") : Effect.void
      )
      // Should this process exit before the scope has closed (a stop that gave up waiting, also while this
      // finalizer still waits for a vm-agent to stop), no node outlives it.
      const killAll = () => {
        for (const { child } of children.values()) if (child.exitCode === null) child.kill("SIGKILL")
      }
      process.once("exit", killAll)
      yield* Effect.addFinalizer(() =>
        Effect.gen(function* () {
          stopping = true
          yield* Fiber.interruptAll(supervisors.values())
          // every start under way has ended (a later one gets a permit and refuses)
          yield* starts.take(STARTS)
          yield* starts.release(STARTS)
          yield* Effect.forEach([...children.values()], ({ child }) => stopChild(child), {
            concurrency: "unbounded",
            discard: true
          })
          process.removeListener("exit", killAll)
        })
      )

      /** Fresh credentials, the node's consumer, and the vm-agent process. */
      const start = (nodeId: string) =>
        Effect.gen(function* () {
          yield* refuseWhenStopping
          const dir = join(options.dataDir, "nodes", nodeId)
          const user = yield* accounts.nodeCredentials(nodeId, ttlSeconds)
          const credsFile = join(dir, "node.creds")
          // once the provider stops, its data directory may be removed: nothing is written there or started any more
          yield* refuseWhenStopping
          yield* Effect.promise(async () => {
            await mkdir(dir, { recursive: true, mode: 0o700 })
            await writeFile(credsFile, Redacted.value(user.creds), { mode: 0o600 })
          })
          yield* Consume.ensureConsumer("SAM_NODE", Consume.nodeConsumer(nodeId)).pipe(
            Effect.provideService(Nats, nats)
          )
          // from here to `children.set`, nothing waits: a vm-agent spawned is in `children` before the finalizer looks
          yield* refuseWhenStopping
          const log = createWriteStream(join(dir, "vm-agent.log"), { flags: "a", mode: 0o600 })
          // Compiled JavaScript when `./sam` built it (SAM_COMPILED=1, infra/build.mjs), else from source.
          const main =
            process.env.SAM_COMPILED === "1"
              ? [join(repoRoot, "dist/vm-agent.mjs")]
              : ["--import", "tsx", join(repoRoot, "vm-agent/src/main.ts")]
          // it ends with this process, also one killed outright (its next `sam up` stopped it only then)
          const [command, args] = diesWithParent(process.execPath, main)
          const child = spawn(command, [...args], {
            cwd: repoRoot,
            env: {
              ...process.env,
              SAM_NODE_ID: nodeId,
              SAM_NATS_URL: options.natsUrl,
              SAM_NATS_CREDS: credsFile,
              SAM_NODE_DATA_DIR: join(dir, "data"),
              SAM_NODE_RUNTIME: options.runtime ?? "auto",
              // Task branches outlive the node's workspaces here (ADR 0023).
              SAM_NODE_BRANCH_DIR: join(options.dataDir, "branches"),
              ...options.env
            },
            stdio: ["ignore", "pipe", "pipe"]
          })
          Leftovers.track(child.pid, `vm-agent of ${nodeId}`)
          // Both pipes into one log, which ends once the child and its pipes are closed (a pipe that
          // ended the log would make the other's next write an unhandled error).
          log.on("error", () => {})
          child.stdout?.pipe(log, { end: false })
          child.stderr?.pipe(log, { end: false })
          child.on("close", () => log.end())
          const exited = new Promise<string>((done) =>
            child.once("exit", (code, signal) => done(exitReason(code, signal)))
          )
          const running = { child, startedAt: Date.now(), exited } satisfies Running
          children.set(nodeId, running)
          return running
        }).pipe(starts.withPermits(1))

      /** Why a node must not run again, if it must not. */
      const retired = (nodeId: string) =>
        sql<{ status: string }>`SELECT status FROM nodes WHERE id = ${nodeId}`.pipe(
          Effect.map(([row]) =>
            row === undefined
              ? "it is not in the ledger"
              : row.status === "destroying" || row.status === "deleted"
                ? `it is ${row.status}`
                : undefined
          )
        )

      /** A failure that means the node must stay down: retired, or its account revoked. */
      const final = (error: unknown) =>
        typeof error === "string"
          ? error
          : typeof error === "object" && error !== null && "reason" in error && error.reason === "Permission"
            ? `not restarting it: ${String((error as { message?: unknown }).message)}`
            : undefined

      const supervise = (nodeId: string, first: Running) =>
        Effect.gen(function* () {
          let current = first
          let failures = 0
          for (;;) {
            const reason = yield* Effect.promise(() => current.exited)
            if (stopping) return
            if (Date.now() - current.startedAt >= policy.stableMs) failures = 0
            let cause = `vm-agent (pid ${current.child.pid}) exited (${reason})`
            for (;;) {
              failures += 1
              const gone = yield* Effect.either(retired(nodeId))
              if (Either.isRight(gone) && gone.right !== undefined) {
                return yield* Effect.logInfo(`local node ${nodeId}: ${cause}; not restarting it: ${gone.right}`)
              }
              const delay = backoff({ ...policy, maxAttempts: 0 }, failures)
              yield* Effect.logWarning(
                `local node ${nodeId}: ${cause}; restarting it in ${delay / 1000} s (attempt ${failures})`
              )
              yield* Effect.sleep(delay)
              const again = yield* Effect.either(
                Effect.gen(function* () {
                  const why = yield* retired(nodeId)
                  if (why !== undefined) return yield* Effect.fail(`not restarting it: ${why}`)
                  // Fresh credentials: the old file's JWT may have expired; a revoked node gets none.
                  return yield* start(nodeId)
                })
              )
              if (Either.isRight(again)) {
                current = again.right
                yield* Effect.logInfo(
                  `local node ${nodeId}: vm-agent restarted (pid ${current.child.pid}), attempt ${failures}`
                )
                break
              }
              const stop = final(again.left)
              if (stop !== undefined) return yield* Effect.logInfo(`local node ${nodeId}: ${stop}`)
              // NATS or Postgres may be down a moment: try again, later.
              cause = `cannot restart its vm-agent yet (${String((again.left as { message?: unknown }).message ?? again.left)})`
            }
          }
        })

      const provision = (nodeId: string) =>
        Effect.gen(function* () {
          const supervisor = supervisors.get(nodeId)
          if (supervisor !== undefined && supervisor.unsafePoll() === null) return
          const running = yield* start(nodeId)
          supervisors.set(nodeId, yield* Effect.forkIn(supervise(nodeId, running), scope))
          yield* Effect.logInfo(
            `local node ${nodeId} started (pid ${running.child.pid}; log ${join(options.dataDir, "nodes", nodeId, "vm-agent.log")})`
          )
        })
      /** The node is retired (ADR 0023): its supervisor ends and its vm-agent is stopped, for good. */
      const destroy = (nodeId: string) =>
        Effect.gen(function* () {
          const supervisor = supervisors.get(nodeId)
          supervisors.delete(nodeId)
          if (supervisor !== undefined) yield* Fiber.interrupt(supervisor)
          const running = children.get(nodeId)
          children.delete(nodeId)
          if (running === undefined || running.child.exitCode !== null || running.child.signalCode !== null)
            return "no vm-agent of it was running"
          yield* stopChild(running.child)
          yield* Effect.logInfo(
            `local node ${nodeId}: vm-agent (pid ${running.child.pid}) stopped; the node is destroyed`
          )
          return `vm-agent (pid ${running.child.pid}) stopped`
        })

      /** Nodes with a vm-agent running or being restarted here. */
      const list = () =>
        Effect.sync(() => [
          ...new Set([
            ...[...children]
              .filter(([, r]) => r.child.exitCode === null && r.child.signalCode === null)
              .map(([id]) => id),
            ...[...supervisors].filter(([, f]) => f.unsafePoll() === null).map(([id]) => id)
          ])
        ])
      return { provision, destroy, list }
    })
  )
