import { readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { makeId, natsLayer } from "@sam/bus"
import { Sql } from "@sam/sql"
import { Effect, Layer, Redacted } from "effect"
import type * as LocalStack from "./LocalStack.js"
import { StackError } from "./StackError.js"

/**
 * Connections to a running `sam up` for the CLI: NATS with the control plane's credentials and
 * Postgres with the generated password, both read from the data directory.
 */
export const layer = (options: LocalStack.StackOptions) =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      const read = (path: string) =>
        Effect.tryPromise({
          try: () => readFile(path, "utf8"),
          catch: () =>
            new StackError({
              step: "connect",
              message: `cannot read ${path}: has \`./sam up\` run with this data directory?`
            })
        })
      const creds = yield* read(join(options.dataDir, "nats", "control-plane.creds"))
      const password = (yield* read(join(options.dataDir, "postgres", "password"))).trim()
      const url = `postgres://sam:${encodeURIComponent(password)}@${options.host}:${options.pgPort}/${options.database}`
      return Layer.merge(
        natsLayer({
          servers: `nats://${options.host}:${options.natsPort}`,
          creds: Redacted.make(creds),
          name: "sam-cli"
        }),
        Sql.layer(Redacted.make(url), "sam-cli")
      )
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

/** The local owner account of this installation, created the first time it is needed. */
export const localOwner = (dataDir: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const file = join(dataDir, "owner.json")
    const existing = yield* Effect.promise(() =>
      readFile(file, "utf8")
        .then((text) => JSON.parse(text) as { userId: string })
        .catch(() => undefined)
    )
    const userId = existing?.userId ?? makeId("user")
    yield* sql`INSERT INTO users (id, display_name) VALUES (${userId}, 'Local owner') ON CONFLICT (id) DO NOTHING`
    if (existing === undefined) {
      yield* Effect.promise(() =>
        writeFile(file, JSON.stringify({ userId, createdAt: new Date().toISOString() }), {
          mode: 0o600
        })
      )
    }
    return userId
  })
