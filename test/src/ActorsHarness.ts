import { type ChildProcess, spawn } from "node:child_process"
import { writeFile } from "node:fs/promises"
import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { Actor } from "@sam/actors"
import { Nats, Publish } from "@sam/bus"
import { Migrations } from "@sam/sql"
import { Effect, Redacted } from "effect"
import { type Counter, createCounterTable, Increment } from "./CounterActor.js"
import { freshDatabase, sqlLayer, stack } from "./Env.js"
import { tempDir } from "./TestStack.js"

/** A migrated database with the counter table. */
export const actorsDatabase = async () => {
  const url = await freshDatabase()
  await Effect.runPromise(
    Effect.gen(function* () {
      yield* Migrations.migrate()
      yield* createCounterTable(yield* SqlClient.SqlClient)
    }).pipe(Effect.provide(sqlLayer(url)))
  )
  return url
}

/** Poll `check` until it holds, failing with `what` after `timeoutMs`. Never a fixed wait. */
export const waitUntil = <E, R>(
  what: string,
  check: Effect.Effect<boolean, E, R>,
  timeoutMs: number,
  everyMs = 100
): Effect.Effect<void, E | Error, R> =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    while (!(yield* check)) {
      if (Date.now() > deadline)
        return yield* Effect.fail(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`))
      yield* Effect.sleep(everyMs)
    }
  })

export const counters = (kind: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<Counter & { id: string }>`
      SELECT id, count, last_seq, violations, fired FROM test_counters WHERE kind = ${kind}`
    return new Map(rows.map((row) => [row.id, row]))
  })

/** How many events the test kind `kindName` has published to SAM_EVT. */
export const eventCount = (kindName: string) =>
  Effect.gen(function* () {
    const { jsm } = yield* Nats
    const info = yield* Effect.promise(() =>
      jsm.streams.info("SAM_EVT", { subjects_filter: `sam.evt.test.${kindName}.>` })
    )
    return Object.values(info.state.subjects ?? {}).reduce((sum, n) => sum + n, 0)
  })

export const entityIds = (n: number) => Array.from({ length: n }, (_, i) => `e${i}`)

/**
 * Publish `perEntity` increments (seq 1…n) to each entity, spread over `publishers` concurrent
 * fibers; each entity belongs to one publisher, which publishes its commands in order.
 */
export const publishLoad = (input: {
  readonly kind: Pick<Actor.AnyActorKind, "name" | "shards">
  readonly entities: ReadonlyArray<string>
  readonly perEntity: number
  readonly publishers: number
  /** also publish every command a second time: with the same id (and Nats-Msg-Id) */
  readonly twice?: "same-msg-id" | "no-msg-id"
  readonly startSeq?: number
}) =>
  Effect.gen(function* () {
    const { js } = yield* Nats
    const groups = Array.from({ length: input.publishers }, (_, p) =>
      input.entities.filter((_, i) => i % input.publishers === p)
    )
    yield* Effect.forEach(
      groups,
      (group) =>
        Effect.gen(function* () {
          for (let seq = input.startSeq ?? 1; seq < (input.startSeq ?? 1) + input.perEntity; seq++) {
            yield* Effect.forEach(
              group,
              (id) =>
                Effect.gen(function* () {
                  const envelope = Increment.make({ seq })
                  const subject = Actor.subjectOf(input.kind, id)
                  yield* Publish.publish(subject, envelope)
                  if (input.twice === "same-msg-id") yield* Publish.publish(subject, envelope)
                  if (input.twice === "no-msg-id") {
                    yield* Effect.promise(() => js.publish(subject, JSON.stringify(envelope)))
                  }
                }),
              { concurrency: 16, discard: true }
            )
          }
        }),
      { concurrency: "unbounded", discard: true }
    )
  })

export interface WorkerEvent {
  readonly event: string
  readonly t: number
  readonly shard?: number
  readonly epoch?: number
  readonly id?: string
  readonly messageId?: string
}

export interface Worker {
  readonly name: string
  readonly child: ChildProcess
  readonly events: Array<WorkerEvent>
  readonly exited: Promise<number | null>
  readonly signal: (signal: NodeJS.Signals) => void
  /** the last 4,000 characters of its log and of its stderr: what its runtime warned of */
  readonly logTail: () => string
  /** shards this worker holds now, from its Acquired/Released/Lost reports */
  readonly owned: () => Set<number>
}

/** Start an actor runtime in a child process (test/src/actorsWorker.ts) on the shared stack. */
export const startWorker = async (input: {
  readonly name: string
  readonly kind: string
  readonly shards: number
  readonly databaseUrl: Redacted.Redacted<string>
  readonly leaseTtlMs: number
  readonly ackWaitMs?: number
  /** its kind reads a group's entities together and commits a group in one statement (ADR 0056) */
  readonly inOne?: boolean
}): Promise<Worker> => {
  const dir = await tempDir("sam-actors-worker-")
  const credsFile = join(dir, "control-plane.creds")
  await writeFile(credsFile, stack().controlPlaneCreds, { mode: 0o600 })
  const child = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "actorsWorker.ts")], {
    cwd: join(import.meta.dirname, ".."),
    env: {
      ...process.env,
      SAM_NATS_URL: stack().natsUrl,
      SAM_NATS_CREDS: credsFile,
      SAM_DATABASE_URL: Redacted.value(input.databaseUrl),
      WORKER_NAME: input.name,
      WORKER_KIND: input.kind,
      WORKER_SHARDS: String(input.shards),
      WORKER_LEASE_TTL_MS: String(input.leaseTtlMs),
      WORKER_ACK_WAIT_MS: String(input.ackWaitMs ?? 4_000),
      WORKER_IN_ONE: input.inOne === true ? "1" : "0"
    },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const events: Array<WorkerEvent> = []
  let log = ""
  let buffer = ""
  child.stdout?.on("data", (chunk: Buffer) => {
    buffer += chunk.toString("utf8")
    let at = buffer.indexOf("\n")
    while (at >= 0) {
      const line = buffer.slice(0, at)
      buffer = buffer.slice(at + 1)
      if (line.startsWith("{")) events.push(JSON.parse(line) as WorkerEvent)
      // its runtime's warnings (Effect's logfmt logger writes to stdout)
      else log = `${log}${line}\n`.slice(-4000)
      at = buffer.indexOf("\n")
    }
  })
  let stderr = ""
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString("utf8")).slice(-4000)
  })
  const exited = new Promise<number | null>((resolve) =>
    child.on("exit", (code) => {
      if (code !== 0 && code !== null) process.stderr.write(`worker ${input.name} exited ${code}: ${stderr}\n`)
      resolve(code)
    })
  )
  return {
    name: input.name,
    child,
    events,
    exited,
    signal: (signal) => {
      child.kill(signal)
    },
    logTail: () => `${log}${stderr}`,
    owned: () => {
      const held = new Set<number>()
      for (const e of events) {
        if (e.shard === undefined) continue
        if (e.event === "Acquired") held.add(e.shard)
        if (e.event === "Released" || e.event === "Lost" || e.event === "Fenced") held.delete(e.shard)
      }
      return held
    }
  }
}

/** Stop a worker and wait for it to exit (SIGKILL if SIGTERM is not enough in time). */
export const stopWorker = async (worker: Worker) => {
  if (worker.child.exitCode !== null || worker.child.signalCode !== null) return
  worker.signal("SIGCONT")
  worker.signal("SIGTERM")
  const timer = setTimeout(() => worker.signal("SIGKILL"), 10_000)
  await worker.exited
  clearTimeout(timer)
}
