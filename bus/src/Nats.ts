import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream"
import { jetstream, jetstreamManager } from "@nats-io/jetstream"
import { Kvm } from "@nats-io/kv"
import { type NatsConnection, type Subscription, wsconnect } from "@nats-io/nats-core"
import { connect, credsAuthenticator } from "@nats-io/transport-node"
import { Config, Context, Effect, Layer, Option, Redacted, Runtime, type Scope } from "effect"
import { NatsError } from "./Errors.js"
import { makeStreamPublisher, type StreamPublisher } from "./StreamPublisher.js"

export interface NatsOptions {
  readonly servers: string
  /**
   * contents of a `.creds` file (user JWT and seed), or a function giving the current contents:
   * it is asked on every (re)connect, so renewed credentials are used from the next connect on
   */
  readonly creds?: Redacted.Redacted<string> | (() => Redacted.Redacted<string>) | undefined
  /** the JetStream API prefix (a node account imports its consumer's API under its own prefix) */
  readonly jsApiPrefix?: string | undefined
  readonly name: string
  /** required when the credentials only allow replies under one prefix (nodes, users) */
  readonly inboxPrefix?: string | undefined
  /** keep retrying the initial connect (a service starting before its server) */
  readonly waitOnFirstConnect?: boolean | undefined
}

/**
 * One NATS connection with its JetStream client, manager and KV manager. Acquired in a scope and
 * drained when the scope closes, so in-flight publishes and acks are flushed on shutdown.
 */
export class Nats extends Context.Tag("sam/Nats")<
  Nats,
  {
    readonly nc: NatsConnection
    readonly js: JetStreamClient
    readonly jsm: JetStreamManager
    readonly kvm: Kvm
    /** JetStream publishes acknowledged on one subscription of this connection (`Publish`, the outbox) */
    readonly streams: StreamPublisher
    /**
     * Whether the connection is up now (false from a disconnect until the reconnect): what is only worth
     * sending while the server can be reached (a stop's give-backs) asks this rather than wait out a timeout.
     */
    readonly reachable: () => boolean
  }
>() {}

const credsBytes = (creds: Redacted.Redacted<string> | (() => Redacted.Redacted<string>)) =>
  typeof creds === "function"
    ? () => new TextEncoder().encode(Redacted.value(creds()))
    : new TextEncoder().encode(Redacted.value(creds))

/** `ws://` or `wss://`: NATS over WebSocket (a remote node through the gateway's `/nats`, ADR 0027). */
const overWebSocket = (servers: string) => /^wss?:\/\//.test(servers)

/**
 * Connect; interruptible, also while `waitOnFirstConnect` keeps trying (a vm-agent told to stop before its server
 * was ever reached waited for it for ever, SIGTERM or not). A connection made after the interruption is closed.
 */
export const connectNats = (options: NatsOptions) =>
  Effect.tryPromise({
    try: (signal) =>
      (overWebSocket(options.servers) ? wsconnect : connect)({
        servers: options.servers,
        name: options.name,
        ...(options.creds === undefined ? {} : { authenticator: credsAuthenticator(credsBytes(options.creds)) }),
        ...(options.inboxPrefix === undefined ? {} : { inboxPrefix: options.inboxPrefix }),
        ...(options.waitOnFirstConnect ? { waitOnFirstConnect: true } : {}),
        maxReconnectAttempts: -1,
        // The client would otherwise make an Error per request, for a stack it rarely reports: 6% of a
        // vm-agent's time when a session streams (issue 12). A failed request is wrapped by the caller.
        noAsyncTraces: true
      }).then((nc) => {
        if (signal.aborted) void nc.close().catch(() => undefined)
        return nc
      }),
    catch: (cause) =>
      new NatsError({ reason: "Connect", message: `cannot connect to NATS at ${options.servers}: ${cause}`, cause })
  })

/**
 * Drain on release (flushes publishes and acks), but never hang a shutdown on it: close after 3 s, and at once
 * while the server is out of reach. A drain then could only wait for a reconnect, and what it would flush is
 * never the only copy: a request or a JetStream publish has its caller waiting for the answer, an outbox row
 * is sent again by its relay, and an unacknowledged delivery comes again.
 */
const acquire = (options: NatsOptions) =>
  Effect.acquireRelease(
    // An acquisition is uninterruptible unless it says otherwise: a stop must not wait for a server that never came.
    Effect.map(Effect.interruptible(connectNats(options)), (nc) => {
      let reachable = true
      void (async () => {
        for await (const status of nc.status()) {
          if (status.type === "disconnect") reachable = false
          else if (status.type === "reconnect") reachable = true
        }
      })()
      return { nc, reachable: () => reachable }
    }),
    ({ nc, reachable }) =>
      reachable()
        ? // Interruptible: a release runs uninterruptibly, and the timeout must be able to end the drain.
          Effect.promise(() => nc.drain().catch(() => undefined)).pipe(
            Effect.interruptible,
            Effect.timeout("3 seconds"),
            Effect.catchAll(() => Effect.promise(() => nc.close().catch(() => undefined)))
          )
        : Effect.promise(() => nc.close().catch(() => undefined))
  )

export const makeNats = Effect.fn("Nats.make")(function* (options: NatsOptions) {
  const { nc, reachable } = yield* acquire(options)
  const jsm = yield* Effect.tryPromise({
    try: () =>
      jetstreamManager(nc, {
        checkAPI: false,
        ...(options.jsApiPrefix === undefined ? {} : { apiPrefix: options.jsApiPrefix })
      }),
    catch: (cause) => new NatsError({ reason: "JetStream", message: `JetStream unavailable: ${cause}`, cause })
  })
  const js = jetstream(nc, options.jsApiPrefix === undefined ? {} : { apiPrefix: options.jsApiPrefix })
  // Its subscription ends with the connection's drain, after the acknowledgements still on their way.
  return Nats.of({ nc, js, jsm, kvm: new Kvm(js), streams: makeStreamPublisher(nc), reachable })
})

export const natsLayer = (options: NatsOptions) => Layer.scoped(Nats, makeNats(options))

/** `SAM_NATS_URL` (default nats://127.0.0.1:4222) and `SAM_NATS_CREDS` (a `.creds` file path). */
export const natsLayerConfig = (name: string) =>
  Layer.scoped(
    Nats,
    Effect.gen(function* () {
      const servers = yield* Config.string("SAM_NATS_URL").pipe(Config.withDefault("nats://127.0.0.1:4222"))
      const credsPath = yield* Config.option(Config.string("SAM_NATS_CREDS"))
      const creds = yield* Option.match(credsPath, {
        onNone: () => Effect.succeed(undefined),
        onSome: (path) =>
          Effect.tryPromise({
            try: async () => Redacted.make(await (await import("node:fs/promises")).readFile(path, "utf8")),
            catch: (cause) =>
              new NatsError({ reason: "Connect", message: `cannot read NATS credentials ${path}: ${cause}`, cause })
          })
      })
      return yield* makeNats({ servers, creds, name })
    })
  )

/**
 * Answer each message of a core subscription in a fiber of its own (a slow answer holds up no other), each the root
 * of a trace of its own (`span`), not a child of the span that started the service.
 */
export const answerEach = <R>(
  sub: Subscription,
  span: string,
  answer: (subject: string, reply: string | undefined, data: Uint8Array) => Effect.Effect<void, never, R>
): Effect.Effect<void, never, R | Scope.Scope> =>
  Effect.gen(function* () {
    const runFork = Runtime.runFork(yield* Effect.runtime<R>())
    yield* Effect.forkScoped(
      Effect.promise(async () => {
        for await (const msg of sub)
          runFork(
            answer(msg.subject, msg.reply, msg.data).pipe(
              Effect.withSpan(span, { root: true, captureStackTrace: false })
            )
          )
      })
    )
  })
