import { chmod, mkdir, readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { encodeAccount, encodeOperator } from "@nats-io/jwt"
import { createAccount, createOperator, fromSeed, type KeyPair } from "@nats-io/nkeys"
import type { Credentials } from "@sam/bus"
import { Effect, Redacted } from "effect"
import { z } from "zod"
import { StackError } from "./StackError.js"

/**
 * Operator-mode NATS for one installation: an operator, the system account and the SAM account
 * (with a separate signing key for users). The seeds are generated once into the data directory and
 * reused; the JWTs and the server configuration are written anew on every start from them.
 */
const KeysFile = z.object({
  operator: z.string().startsWith("SO"),
  systemAccount: z.string().startsWith("SA"),
  samAccount: z.string().startsWith("SA"),
  samSigning: z.string().startsWith("SA")
})
type KeysFile = z.infer<typeof KeysFile>

export interface NatsAuth {
  readonly operatorPublicKey: string
  readonly systemAccountPublicKey: string
  readonly samAccountPublicKey: string
  /** what the control plane needs to mint users */
  readonly signing: Credentials.SigningAccount
  readonly operatorJwt: string
  readonly systemAccountJwt: string
  readonly samAccountJwt: string
  readonly created: boolean
}

const seedOf = (kp: KeyPair) => new TextDecoder().decode(kp.getSeed())
const load = (seed: string) => fromSeed(new TextEncoder().encode(seed))

const fail = (message: string) => (cause: unknown) => new StackError({ step: "nats keys", message, cause })

/** All account and connection limits explicit: a partly given block defaults the rest to 0. */
const unlimitedAccount = {
  subs: -1,
  data: -1,
  payload: -1,
  imports: -1,
  exports: -1,
  wildcards: true,
  conn: -1,
  leaf: -1
}

export const loadOrCreate = Effect.fn("NatsAuth.loadOrCreate")(function* (dir: string) {
  const path = join(dir, "keys.json")
  yield* Effect.tryPromise({ try: () => mkdir(dir, { recursive: true, mode: 0o700 }), catch: fail(`create ${dir}`) })
  const existing = yield* Effect.tryPromise({
    try: () =>
      readFile(path, "utf8").catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? undefined : Promise.reject(e))),
    catch: fail(`read ${path}`)
  })
  let keys: KeysFile
  const created = existing === undefined
  if (existing === undefined) {
    keys = {
      operator: seedOf(createOperator()),
      systemAccount: seedOf(createAccount()),
      samAccount: seedOf(createAccount()),
      samSigning: seedOf(createAccount())
    }
    yield* Effect.tryPromise({
      try: () => writeFile(path, `${JSON.stringify(keys, null, 2)}\n`, { mode: 0o600 }),
      catch: fail(`write ${path}`)
    })
  } else {
    const parsed = KeysFile.safeParse(
      yield* Effect.try({ try: () => JSON.parse(existing), catch: fail(`${path} is not JSON`) })
    )
    if (!parsed.success)
      return yield* new StackError({ step: "nats keys", message: `${path} is damaged: ${parsed.error.message}` })
    keys = parsed.data
    yield* Effect.tryPromise({ try: () => chmod(path, 0o600), catch: fail(`chmod ${path}`) })
  }
  const operator = load(keys.operator)
  const system = load(keys.systemAccount)
  const sam = load(keys.samAccount)
  const samSigning = load(keys.samSigning)
  const jwts = yield* Effect.tryPromise({
    try: async () => ({
      operatorJwt: await encodeOperator("sam-operator", operator, { system_account: system.getPublicKey() }),
      systemAccountJwt: await encodeAccount("SYS", system, { limits: unlimitedAccount }, { signer: operator }),
      samAccountJwt: await encodeAccount(
        "SAM",
        sam,
        {
          limits: {
            ...unlimitedAccount,
            mem_storage: -1,
            disk_storage: -1,
            streams: -1,
            consumer: -1,
            max_ack_pending: -1,
            mem_max_stream_bytes: -1,
            disk_max_stream_bytes: -1,
            max_bytes_required: false
          },
          signing_keys: [samSigning.getPublicKey()]
        },
        { signer: operator }
      )
    }),
    catch: fail("encode operator and account JWTs")
  })
  return {
    operatorPublicKey: operator.getPublicKey(),
    systemAccountPublicKey: system.getPublicKey(),
    samAccountPublicKey: sam.getPublicKey(),
    signing: { accountPublicKey: sam.getPublicKey(), signingSeed: Redacted.make(keys.samSigning) },
    ...jwts,
    created
  } satisfies NatsAuth
})

export interface ServerConfigOptions {
  readonly host: string
  readonly port: number
  readonly storeDir: string
}

/** The nats-server configuration: JetStream on, accounts resolved from memory (preloaded JWTs). */
export const serverConfig = (auth: NatsAuth, options: ServerConfigOptions) =>
  [
    "server_name: sam",
    `listen: "${options.host}:${options.port}"`,
    "max_payload: 1MB",
    "jetstream {",
    `  store_dir: ${JSON.stringify(options.storeDir)}`,
    "  max_memory_store: 256MB",
    "  max_file_store: 20GB",
    "}",
    `operator: ${auth.operatorJwt}`,
    `system_account: ${auth.systemAccountPublicKey}`,
    "resolver: MEMORY",
    "resolver_preload: {",
    `  ${auth.systemAccountPublicKey}: ${auth.systemAccountJwt}`,
    `  ${auth.samAccountPublicKey}: ${auth.samAccountJwt}`,
    "}",
    ""
  ].join("\n")
