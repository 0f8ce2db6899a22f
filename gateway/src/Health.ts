import { SqlClient } from "@effect/sql"
import { Nats } from "@sam/bus"
import { Context, Deferred, type Duration, Effect, Layer, Option, Runtime, Schedule } from "effect"
import { ApiError } from "./ApiError.js"

export type Dependency = "nats" | "postgres"

const reasons: Record<Dependency, string> = {
  nats: "the message bus is unavailable; retrying",
  postgres: "the database is unavailable; retrying"
}

/**
 * Whether the gateway's NATS connection and Postgres answer, so a request fails at once with 503
 * `unavailable` and the reason while one of them is down, instead of hanging on it (ADR 0020).
 * NATS from its connection's status events (the client reconnects by itself), Postgres from a cheap
 * query every second: refused (the server gone) is down at once; unanswered is down only after
 * `SLOW_PROBES` probes in a row, as one slow answer is as likely a busy machine or pool as a frozen server.
 */
export class Health extends Context.Tag("sam/gateway/Health")<
  Health,
  {
    /** the first dependency that is down now, if any */
    readonly down: () => Option.Option<Dependency>
    /** completes with a dependency as soon as one is down (at once if one is) */
    readonly whenDown: Effect.Effect<Dependency>
    /** probe Postgres now (a request just failed: was it the database?), then `down()` */
    readonly recheck: Effect.Effect<Option.Option<Dependency>>
  }
>() {}

export const unavailable = (dependency: Dependency, during = false) =>
  new ApiError({
    code: "unavailable",
    message: during
      ? `${reasons[dependency]} (it went down during this request, which may or may not have been applied)`
      : reasons[dependency],
    details: { dependency },
    retryAfter: 1
  })

const PROBE_EVERY = "1 second"
const PROBE_TIMEOUT = "2 seconds"
/** unanswered probes in a row that make Postgres down (about 5 s of a frozen server) */
const SLOW_PROBES = 2

type Probe = "answered" | "refused" | "unanswered"

export const layer = Layer.scoped(
  Health,
  Effect.gen(function* () {
    const { nc } = yield* Nats
    const sql = yield* SqlClient.SqlClient
    const state: Record<Dependency, boolean> = { nats: nc.isClosed(), postgres: false }
    let waiters = yield* Deferred.make<Dependency>()
    const set = (dependency: Dependency, isDown: boolean) =>
      Effect.gen(function* () {
        if (state[dependency] === isDown) return
        state[dependency] = isDown
        yield* isDown
          ? Effect.logWarning(`gateway: ${reasons[dependency]}; requests answer 503 until it is back`)
          : Effect.logInfo(`gateway: ${dependency === "nats" ? "the message bus" : "the database"} is back`)
        if (isDown) {
          yield* Deferred.succeed(waiters, dependency)
          waiters = yield* Deferred.make<Dependency>()
        }
      })
    const down = () =>
      state.nats
        ? Option.some<Dependency>("nats")
        : state.postgres
          ? Option.some<Dependency>("postgres")
          : Option.none()

    const runtime = yield* Effect.runtime<never>()
    // Ends with the gateway: the connection's own close, after the gateway has stopped, is no outage to warn of.
    yield* Effect.forkScoped(
      Effect.promise(async (signal) => {
        for await (const status of nc.status()) {
          if (signal.aborted) return
          const isDown =
            status.type === "disconnect" || status.type === "close"
              ? true
              : status.type === "reconnect"
                ? false
                : undefined
          if (isDown !== undefined) await Runtime.runPromise(runtime)(set("nats", isDown))
        }
      })
    )
    const ask = (timeout: Duration.DurationInput) =>
      sql`SELECT 1`.pipe(
        Effect.timeout(timeout),
        Effect.match({
          onFailure: (error): Probe => (error._tag === "TimeoutException" ? "unanswered" : "refused"),
          onSuccess: (): Probe => "answered"
        })
      )
    let unanswered = 0
    const probe = ask(PROBE_TIMEOUT).pipe(
      Effect.flatMap((result) => {
        unanswered = result === "unanswered" ? unanswered + 1 : 0
        return result === "answered"
          ? set("postgres", false)
          : result === "refused" || unanswered >= SLOW_PROBES
            ? set("postgres", true)
            : Effect.void
      })
    )
    yield* Effect.forkScoped(probe.pipe(Effect.repeat(Schedule.spaced(PROBE_EVERY))))
    return Health.of({
      down,
      whenDown: Effect.suspend(() =>
        Option.match(down(), { onSome: Effect.succeed, onNone: () => Deferred.await(waiters) })
      ),
      // A request just failed: a refused probe says it was the database; a slow one is left to the regular probes.
      recheck: Effect.suspend(() =>
        state.postgres
          ? Effect.void
          : ask("500 millis").pipe(
              Effect.flatMap((result) => (result === "refused" ? set("postgres", true) : Effect.void))
            )
      ).pipe(Effect.map(down))
    })
  })
)
