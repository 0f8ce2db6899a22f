import { PgClient } from "@effect/sql-pg"
import { Config, type Redacted } from "effect"

/** snake_case columns in, camelCase fields out, everywhere. */
const naming = {
  transformResultNames: (name: string) => name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()),
  transformQueryNames: (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
}

/** The Postgres client for a database URL (a secret: it may carry a password). */
export const layer = (url: Redacted.Redacted<string>, applicationName = "sam") =>
  PgClient.layer({ url, applicationName, maxConnections: 10, ...naming })

/** `SAM_DATABASE_URL` (a Postgres URL). */
export const layerConfig = (applicationName = "sam") =>
  PgClient.layerConfig({
    url: Config.redacted("SAM_DATABASE_URL"),
    applicationName: Config.succeed(applicationName),
    maxConnections: Config.succeed(10),
    transformResultNames: Config.succeed(naming.transformResultNames),
    transformQueryNames: Config.succeed(naming.transformQueryNames)
  })
