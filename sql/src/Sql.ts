import { PgClient } from "@effect/sql-pg"
import { Config, type Redacted } from "effect"

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

/** The Postgres client for a database URL (a secret: it may carry a password). */
export const layer = (url: Redacted.Redacted<string>, applicationName = "sam") =>
  PgClient.layer({ url, applicationName, maxConnections: poolSize(), ...naming })

/** `SAM_DATABASE_URL` (a Postgres URL). */
export const layerConfig = (applicationName = "sam") =>
  PgClient.layerConfig({
    url: Config.redacted("SAM_DATABASE_URL"),
    applicationName: Config.succeed(applicationName),
    maxConnections: Config.succeed(poolSize()),
    transformResultNames: Config.succeed(naming.transformResultNames),
    transformQueryNames: Config.succeed(naming.transformQueryNames)
  })
