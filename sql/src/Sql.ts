import { SqlError } from "@effect/sql/SqlError"
import { PgClient } from "@effect/sql-pg"
import { Config, Effect, Layer, Redacted } from "effect"
import Pg from "pg"

/** snake_case columns in, camelCase fields out, everywhere. */
const naming = {
  transformResultNames: (name: string) => name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()),
  transformQueryNames: (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
}

/**
 * Connections per process (`SAM_DATABASE_POOL`, default 24). A shard's commit holds one for the length of
 * its transaction, and the control plane runs two commit lanes for each of its 32 shards besides the
 * report ingress and the relays: with 10, a burst over many sessions waited for a connection more than
 * it worked (issue 12). Embedded Postgres allows 200.
 */
export const poolSize = () => {
  const configured = Number(process.env.SAM_DATABASE_POOL)
  return Number.isInteger(configured) && configured > 0 ? configured : 24
}

/**
 * Statement names for query texts (ADR 0033). `pg` sends a query with parameters as an unnamed statement,
 * which Postgres parses, analyses and rewrites anew at every call; a named one it parses once per
 * connection and then only binds. A text is named the second time this process sends it (one-off texts,
 * such as an insert of a row count seen once, stay unnamed), and at most `MAX_NAMED` texts are named, so
 * what each connection keeps prepared in Postgres stays bounded. `SAM_DATABASE_PREPARE=off` sends every
 * query unnamed (for a pooler that cannot keep a connection's named statements, such as PgBouncer in
 * transaction mode before 1.21).
 */
const MAX_NAMED = 400
/** longer texts are never named: they are the ones that grow with a count of rows, and memory stays bounded */
const MAX_NAMED_LENGTH = 16_384
const named = new Map<string, string>()
const seenOnce = new Set<string>()
const nameOf = (text: string): string | undefined => {
  const name = named.get(text)
  if (name !== undefined || named.size >= MAX_NAMED || text.length > MAX_NAMED_LENGTH) return name
  if (!seenOnce.has(text)) {
    if (seenOnce.size >= 1_000) seenOnce.clear()
    seenOnce.add(text)
    return undefined
  }
  seenOnce.delete(text)
  const fresh = `sam_${named.size}`
  named.set(text, fresh)
  return fresh
}

/** A `pg` client that sends each often-used query text with parameters as a named (prepared) statement. */
class PreparingClient extends Pg.Client {
  // biome-ignore lint/suspicious/noExplicitAny: pg's query has a dozen overloads; this forwards them all
  override query(config: any, values?: any, callback?: any): any {
    if (typeof config === "string" && Array.isArray(values) && values.length > 0) {
      const name = nameOf(config)
      if (name !== undefined) return super.query({ name, text: config, values }, callback)
    }
    return super.query(config, values, callback)
  }
}

/** The Postgres client for a database URL (a secret: it may carry a password). */
export const layer = (url: Redacted.Redacted<string>, applicationName = "sam") =>
  PgClient.layerFromPool({
    acquire: Effect.acquireRelease(
      Effect.sync(() => {
        const pool = new Pg.Pool({
          connectionString: Redacted.value(url),
          application_name: applicationName,
          max: poolSize(),
          ...(process.env.SAM_DATABASE_PREPARE === "off" ? {} : { Client: PreparingClient })
        })
        pool.on("error", () => {})
        return pool
      }).pipe(
        // as PgClient.make does: a database that cannot be reached fails the layer within 5 s
        Effect.tap((pool) =>
          Effect.tryPromise({
            try: () => pool.query("SELECT 1"),
            catch: (cause) => new SqlError({ cause, message: "PgClient: Failed to connect" })
          }).pipe(
            Effect.timeoutFail({
              duration: "5 seconds",
              onTimeout: () =>
                new SqlError({ cause: new Error("Connection timed out"), message: "PgClient: Connection timed out" })
            }),
            Effect.tapError(() => Effect.promise(() => pool.end()))
          )
        )
      ),
      (pool) => Effect.promise(() => pool.end()).pipe(Effect.timeoutOption(1000))
    ),
    ...naming
  })

/** `SAM_DATABASE_URL` (a Postgres URL). */
export const layerConfig = (applicationName = "sam") =>
  Layer.unwrapEffect(Effect.map(Config.redacted("SAM_DATABASE_URL"), (url) => layer(url, applicationName)))
