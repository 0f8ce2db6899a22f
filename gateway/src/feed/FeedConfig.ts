import { Config, Effect } from "effect"

/** The feed's limits. Every one has a default; `SAM_FEED_<NAME>` overrides it (tests shorten them). */
export interface FeedOptions {
  /** the server pings this often; a connection silent for two intervals is closed */
  readonly heartbeatMs: number
  /**
   * live backlog (socket buffer + our queue) that a client may stay over for `slowAfterMs` at most,
   * and pass four times never, before it is closed as too slow
   */
  readonly maxBufferedBytes: number
  readonly slowAfterMs: number
  /** catch-up waits until the backlog is below this before sending more */
  readonly lowWaterBytes: number
  /** how long catch-up waits for the backlog to drain before it gives up on the client */
  readonly drainTimeoutMs: number
  /** live events held per session while its catch-up reads; beyond this they are re-read instead */
  readonly maxPendingBytes: number
  /** transcript rows per query */
  readonly pageSize: number
  /** transcript bytes per query (a query returns at least one row): what a page may hold in memory */
  readonly pageBytes: number
  /** after a close frame, how long the client has to read it before the socket is destroyed */
  readonly closeGraceMs: number
  /** how often an open connection's credential is checked again (revocation, expiry) */
  readonly recheckMs: number
  readonly maxSessionsPerConnection: number
  readonly maxProjectsPerConnection: number
  /** open feed connections per user (all gateways count separately); one more is closed with 4009 */
  readonly maxConnectionsPerUser: number
}

export const defaults: FeedOptions = {
  heartbeatMs: 20_000,
  maxBufferedBytes: 4 * 1024 * 1024,
  slowAfterMs: 2_000,
  lowWaterBytes: 256 * 1024,
  drainTimeoutMs: 30_000,
  maxPendingBytes: 1024 * 1024,
  pageSize: 5000,
  pageBytes: 2 * 1024 * 1024,
  closeGraceMs: 5_000,
  recheckMs: 60_000,
  maxSessionsPerConnection: 200,
  maxProjectsPerConnection: 100,
  maxConnectionsPerUser: 32
}

const env = (name: string, fallback: number) => Config.integer(`SAM_FEED_${name}`).pipe(Config.withDefault(fallback))

/** The options: explicit ones first, then `SAM_FEED_*`, then the defaults. */
export const resolve = (explicit: Partial<FeedOptions> = {}) =>
  Effect.gen(function* () {
    const fromEnv: FeedOptions = {
      heartbeatMs: yield* env("HEARTBEAT_MS", defaults.heartbeatMs),
      maxBufferedBytes: yield* env("MAX_BUFFERED_BYTES", defaults.maxBufferedBytes),
      slowAfterMs: yield* env("SLOW_AFTER_MS", defaults.slowAfterMs),
      lowWaterBytes: yield* env("LOW_WATER_BYTES", defaults.lowWaterBytes),
      drainTimeoutMs: yield* env("DRAIN_TIMEOUT_MS", defaults.drainTimeoutMs),
      maxPendingBytes: yield* env("MAX_PENDING_BYTES", defaults.maxPendingBytes),
      pageSize: yield* env("PAGE_SIZE", defaults.pageSize),
      pageBytes: yield* env("PAGE_BYTES", defaults.pageBytes),
      closeGraceMs: yield* env("CLOSE_GRACE_MS", defaults.closeGraceMs),
      recheckMs: yield* env("RECHECK_MS", defaults.recheckMs),
      maxSessionsPerConnection: yield* env("MAX_SESSIONS", defaults.maxSessionsPerConnection),
      maxProjectsPerConnection: yield* env("MAX_PROJECTS", defaults.maxProjectsPerConnection),
      maxConnectionsPerUser: yield* env("MAX_CONNECTIONS_PER_USER", defaults.maxConnectionsPerUser)
    }
    const options: FeedOptions = { ...fromEnv, ...explicit }
    // Catch-up must leave room under the live limit, or its last frame could close the client.
    return { ...options, lowWaterBytes: Math.min(options.lowWaterBytes, Math.floor(options.maxBufferedBytes / 4)) }
  })
