import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { ActorStatus } from "@sam/actors"
import { natsLayer } from "@sam/bus"
import { Sql } from "@sam/sql"
import { Effect, Layer, Redacted } from "effect"
import * as LocalStack from "./LocalStack.js"
import { StackError } from "./StackError.js"

/**
 * `sam actors`: shard owners and epochs, consumer backlogs, dead letters, outbox and timers of the
 * control plane, read from a running stack. NATS from SAM_NATS_URL (or the local port) with
 * SAM_NATS_CREDS (or the data directory's control-plane creds); Postgres from SAM_DATABASE_URL (or
 * the data directory's embedded cluster).
 */
export const actorsStatus = Effect.gen(function* () {
  const options = LocalStack.defaults()
  const env = process.env
  const read = (path: string, what: string) =>
    Effect.tryPromise({
      try: () => readFile(path, "utf8"),
      catch: (cause) =>
        new StackError({
          step: "actors",
          message: `cannot read ${what} ${path} (is \`sam up\` running?): ${cause}`,
          cause
        })
    })
  const creds = yield* read(
    env.SAM_NATS_CREDS ?? join(options.dataDir, "nats", "control-plane.creds"),
    "NATS credentials"
  )
  const databaseUrl =
    env.SAM_DATABASE_URL ??
    `postgres://sam:${encodeURIComponent(
      (yield* read(join(options.dataDir, "postgres", "password"), "Postgres password")).trim()
    )}@127.0.0.1:${options.pgPort}/${options.database}`
  const servers = env.SAM_NATS_URL ?? `nats://127.0.0.1:${options.natsPort}`
  const status = yield* ActorStatus.status().pipe(
    Effect.provide(
      Layer.merge(
        natsLayer({ servers, creds: Redacted.make(creds), name: "sam-actors-status" }),
        Sql.layer(Redacted.make(databaseUrl), "sam-actors-status")
      )
    ),
    Effect.mapError(
      (error) =>
        new StackError({ step: "actors", message: `cannot read the actor status: ${error.message}`, cause: error })
    )
  )
  yield* Effect.sync(() => process.stdout.write(`${ActorStatus.render(status)}\n`))
})
