import type { IncomingMessage } from "node:http"
import type { RequestEventBase, RequestEventCommon } from "@builder.io/qwik-city"
import { Client } from "@sam/gateway/client"
import { Effect, Either } from "effect"

/** What the gateway that serves the app sets (gateway/src/WebApp.ts's `WebConfig`). */
export interface Config {
  readonly apiUrl: string
  readonly github: boolean
  /** the browser's address of a request (`event.clientConn.ip`) */
  readonly clientAddress: (req: Pick<IncomingMessage, "socket" | "headers">) => string | undefined
  /** headers for a call on that browser's behalf that the API's per-address limits count as the browser's */
  readonly clientHeaders: (address: string | undefined) => Record<string, string>
}

export const config: Config = {
  apiUrl: "",
  github: false,
  clientAddress: (req) => req.socket.remoteAddress,
  clientHeaders: () => ({})
}

export const configure = (next: Config) => {
  Object.assign(config, next)
}

export const SESSION_COOKIE = "sam_session"

/** The typed API client as the signed-in user of this request (their session cookie), on loopback. */
export const clientOf = (event: RequestEventBase) =>
  Client.make({
    baseUrl: config.apiUrl !== "" ? config.apiUrl : event.url.origin,
    token: event.cookie.get(SESSION_COOKIE)?.value
  })

export type Failure = {
  readonly status: number
  readonly code: string
  readonly message: string
  readonly details?: unknown
}

/** Runs a call; a failure is data (`Left`), never a thrown error. */
export const run = <A>(effect: Effect.Effect<A, Client.ApiClientError>) =>
  Effect.runPromise(
    Effect.either(effect).pipe(
      Effect.map(
        Either.mapLeft((e): Failure => ({ status: e.status, code: e.code, message: e.message, details: e.details }))
      )
    )
  )

/** Where `load` leaves a page's failure for the problem page (`routes/(app)/problem`). */
export const PAGE_PROBLEM = "sam:page-problem"
export interface PageProblem {
  readonly status: number
  readonly message: string
}

/**
 * Runs a call in a loader: a 401 sends the browser to sign in; any other failure is the page's. A page the browser
 * asked for shows it in the app's own frame (a rewrite to the problem page, with the failure's status, the address
 * kept); a client-side navigation's data request gets it as its error.
 */
export const load = async <A>(event: RequestEventCommon, effect: Effect.Effect<A, Client.ApiClientError>) =>
  settle(event, await run(effect))

/** A call not made, for a place in `loadAll`: its answer is `null`. */
export const noCall: Effect.Effect<null, Client.ApiClientError> = Effect.succeed(null)

/**
 * `load` for calls made together: each runs at once, and their failures are taken in the order given, so the page
 * says the same thing whichever answered first (a project that is not there, before its session).
 */
export const loadAll = async <T extends ReadonlyArray<Effect.Effect<unknown, Client.ApiClientError>>>(
  event: RequestEventCommon,
  effects: T
): Promise<{ -readonly [K in keyof T]: Effect.Effect.Success<T[K]> }> => {
  const results = await Promise.all(effects.map((effect) => run(effect)))
  return results.map((result) => settle(event, result)) as never
}

const settle = <A>(event: RequestEventCommon, result: Either.Either<A, Failure>): A => {
  if (Either.isRight(result)) return result.right
  if (result.left.status === 401) throw event.redirect(302, `/signin?next=${encodeURIComponent(event.url.pathname)}`)
  const problem: PageProblem = {
    status: result.left.status === 0 ? 502 : result.left.status,
    message: result.left.message
  }
  // "@isQData": Qwik City's own mark of a client-side navigation's data request (pinned version, see vite.config.ts)
  if (event.sharedMap.get("@isQData") !== true && event.sharedMap.get(PAGE_PROBLEM) === undefined) {
    event.sharedMap.set(PAGE_PROBLEM, problem)
    throw event.rewrite("/problem")
  }
  throw event.error(problem.status as 500, problem.message)
}
