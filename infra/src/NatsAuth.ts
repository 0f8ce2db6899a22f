import { chmod, mkdir, readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { encodeAccount, encodeOperator } from "@nats-io/jwt"
import { createAccount, createOperator, fromSeed, type KeyPair } from "@nats-io/nkeys"
import { Accounts, type Credentials } from "@sam/bus"
import { Effect, Redacted } from "effect"
import { z } from "zod"
import { StackError } from "./StackError.js"

/**
 * Operator-mode NATS for one installation (ADR 0003, ADR 0016): an operator with a signing key for
 * accounts, the system account and the SAM account (each with a separate signing key for its users),
 * and the signing keys of the outside parties' accounts (one account per node and per API token,
 * made at run time: Accounts.ts). The seeds are generated once into the data directory and reused;
 * the JWTs and the server configuration are written anew on every start from them.
 */
const KeysFile = z.object({
  /** 2 since ADR 0016; a file without it was written before outside parties had accounts of their own */
  layout: z.literal(2).optional(),
  operator: z.string().startsWith("SO"),
  operatorSigning: z.string().startsWith("SO").optional(),
  systemAccount: z.string().startsWith("SA"),
  systemSigning: z.string().startsWith("SA").optional(),
  samAccount: z.string().startsWith("SA"),
  samSigning: z.string().startsWith("SA"),
  nodesSigning: z.string().startsWith("SA").optional(),
  clientsSigning: z.string().startsWith("SA").optional()
})
type KeysFile = z.infer<typeof KeysFile>
interface Keys {
  readonly layout: 2
  readonly operator: string
  readonly operatorSigning: string
  readonly systemAccount: string
  readonly systemSigning: string
  readonly samAccount: string
  readonly samSigning: string
  readonly nodesSigning: string
  readonly clientsSigning: string
}

const complete = (keys: KeysFile): Keys => ({
  layout: 2,
  operator: keys.operator,
  operatorSigning: keys.operatorSigning ?? seedOf(createOperator()),
  systemAccount: keys.systemAccount,
  systemSigning: keys.systemSigning ?? seedOf(createAccount()),
  samAccount: keys.samAccount,
  // Users minted before layout 2 (nodes and programmatic clients inside SAM) die with the old key.
  samSigning: keys.layout === 2 ? keys.samSigning : seedOf(createAccount()),
  nodesSigning: keys.nodesSigning ?? seedOf(createAccount()),
  clientsSigning: keys.clientsSigning ?? seedOf(createAccount())
})

export interface NatsAuth {
  readonly operatorPublicKey: string
  readonly systemAccountPublicKey: string
  readonly samAccountPublicKey: string
  /** what the control plane needs to mint users of the SAM account (its own processes) */
  readonly signing: Credentials.SigningAccount
  /** signs system-account users (the ones that push account JWTs) */
  readonly systemSigning: Credentials.SigningAccount
  /** what makes the outside parties' accounts and users */
  readonly authority: Accounts.Authority
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
  let keys: Keys
  const created = existing === undefined
  if (existing === undefined) {
    keys = complete({
      layout: 2,
      operator: seedOf(createOperator()),
      systemAccount: seedOf(createAccount()),
      samAccount: seedOf(createAccount()),
      samSigning: seedOf(createAccount())
    })
  } else {
    const parsed = KeysFile.safeParse(
      yield* Effect.try({ try: () => JSON.parse(existing), catch: fail(`${path} is not JSON`) })
    )
    if (!parsed.success)
      return yield* new StackError({ step: "nats keys", message: `${path} is damaged: ${parsed.error.message}` })
    keys = complete(parsed.data)
  }
  if (existing === undefined || JSON.stringify(keys) !== JSON.stringify(JSON.parse(existing))) {
    yield* Effect.tryPromise({
      try: () => writeFile(path, `${JSON.stringify(keys, null, 2)}\n`, { mode: 0o600 }),
      catch: fail(`write ${path}`)
    })
  }
  yield* Effect.tryPromise({ try: () => chmod(path, 0o600), catch: fail(`chmod ${path}`) })
  const operator = load(keys.operator)
  const operatorSigning = load(keys.operatorSigning)
  const system = load(keys.systemAccount)
  const systemSigning = load(keys.systemSigning)
  const sam = load(keys.samAccount)
  const samSigning = load(keys.samSigning)
  const jwts = yield* Effect.tryPromise({
    try: async () => ({
      operatorJwt: await encodeOperator("sam-operator", operator, {
        system_account: system.getPublicKey(),
        signing_keys: [operatorSigning.getPublicKey()]
      }),
      systemAccountJwt: await encodeAccount(
        "SYS",
        system,
        { limits: unlimitedAccount, signing_keys: [systemSigning.getPublicKey()] },
        { signer: operatorSigning }
      ),
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
          signing_keys: [samSigning.getPublicKey()],
          exports: [...Accounts.samExports]
        },
        { signer: operatorSigning }
      )
    }),
    catch: fail("encode operator and account JWTs")
  })
  return {
    operatorPublicKey: operator.getPublicKey(),
    systemAccountPublicKey: system.getPublicKey(),
    samAccountPublicKey: sam.getPublicKey(),
    signing: { accountPublicKey: sam.getPublicKey(), signingSeed: Redacted.make(keys.samSigning) },
    systemSigning: { accountPublicKey: system.getPublicKey(), signingSeed: Redacted.make(keys.systemSigning) },
    authority: {
      samAccountPublicKey: sam.getPublicKey(),
      operatorSigningSeed: Redacted.make(keys.operatorSigning),
      nodesSigningSeed: Redacted.make(keys.nodesSigning),
      clientsSigningSeed: Redacted.make(keys.clientsSigning)
    },
    ...jwts,
    created
  } satisfies NatsAuth
})

export interface ServerConfigOptions {
  readonly host: string
  readonly port: number
  readonly storeDir: string
  /** where the server keeps the account JWTs pushed to it (the outside parties' accounts) */
  readonly accountsDir: string
  /**
   * NATS over WebSocket on this loopback port, plain: remote nodes reach it through the gateway's
   * `/nats` (ADR 0027), whose public address carries the TLS
   */
  readonly websocketPort?: number
}

/**
 * The nats-server configuration: JetStream on; accounts from the full resolver, which keeps the
 * account JWTs pushed over the system account (`$SYS.REQ.CLAIMS.UPDATE`) in its directory; SYS and
 * SAM are preloaded (and pushed again at start, so a stored older SAM JWT never wins).
 */
export const serverConfig = (auth: NatsAuth, options: ServerConfigOptions) =>
  [
    "server_name: sam",
    `listen: "${options.host}:${options.port}"`,
    "max_payload: 1MB",
    ...(options.websocketPort === undefined
      ? []
      : ["websocket {", `  listen: "127.0.0.1:${options.websocketPort}"`, "  no_tls: true", "}"]),
    "jetstream {",
    `  store_dir: ${JSON.stringify(options.storeDir)}`,
    "  max_memory_store: 256MB",
    "  max_file_store: 20GB",
    "}",
    `operator: ${auth.operatorJwt}`,
    `system_account: ${auth.systemAccountPublicKey}`,
    `resolver: { type: full, dir: ${JSON.stringify(options.accountsDir)}, allow_delete: false, interval: "2m" }`,
    "resolver_preload: {",
    `  ${auth.systemAccountPublicKey}: ${auth.systemAccountJwt}`,
    `  ${auth.samAccountPublicKey}: ${auth.samAccountJwt}`,
    "}",
    ""
  ].join("\n")
