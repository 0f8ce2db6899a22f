import { NodeRuntime } from "@effect/platform-node"
import { ActorRuntime } from "@sam/actors"
import { natsLayerConfig } from "@sam/bus"
import { Sql } from "@sam/sql"
import { Effect, Layer, Logger, LogLevel } from "effect"
import { counterKind } from "./CounterActor.js"

/**
 * One actor-runtime instance in its own process, for the fault-injection tests (kill -9, SIGSTOP).
 * It reports what happens as JSON lines on stdout: shard acquisitions and losses, refused commits,
 * the start of slow commands. Configured by the environment (see ActorsHarness.startWorker).
 */
const env = (name: string) => {
  const value = process.env[name]
  if (value === undefined) throw new Error(`${name} is required`)
  return value
}

const report = (event: Record<string, unknown>) =>
  process.stdout.write(`${JSON.stringify({ ...event, t: Date.now() })}\n`)

const kind = counterKind(env("WORKER_KIND"), Number(env("WORKER_SHARDS")), {
  onSlow: (id, messageId) => report({ event: "SlowStart", id, messageId }),
  ...(process.env.WORKER_IN_ONE === "1" ? { batched: true, carry: true, inOne: true } : {})
})

const main = Layer.launch(
  ActorRuntime.layer([kind], {
    instanceId: env("WORKER_NAME"),
    leaseTtl: Number(env("WORKER_LEASE_TTL_MS")),
    ackWait: Number(env("WORKER_ACK_WAIT_MS")),
    idleInTransaction: "60 seconds",
    onEvent: (event) => report({ ...event, event: event._tag })
  })
).pipe(
  Effect.provide(Layer.mergeAll(natsLayerConfig(env("WORKER_NAME")), Sql.layerConfig("sam-actors-worker"))),
  Effect.provide(Layer.merge(Logger.logFmt, Logger.minimumLogLevel(LogLevel.Warning)))
)

report({ event: "Started" })
NodeRuntime.runMain(main)
