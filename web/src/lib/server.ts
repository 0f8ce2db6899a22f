import type { RequestEventBase, RequestEventCommon } from "@builder.io/qwik-city"
import { Client } from "@sam/gateway/client"
import { Effect, Either } from "effect"

/** Set by the gateway that serves the app (gateway/src/WebApp.ts). */
export const config = { apiUrl: "", github: false }

export const configure = (next: { readonly apiUrl: string; readonly github: boolean }) => {
  config.apiUrl = next.apiUrl
  config.github = next.github
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

/** Runs a call in a loader: a 401 sends the browser to sign in; any other failure is thrown as the page's error. */
export const load = async <A>(event: RequestEventCommon, effect: Effect.Effect<A, Client.ApiClientError>) => {
  const result = await run(effect)
  if (Either.isRight(result)) return result.right
  if (result.left.status === 401) throw event.redirect(302, `/signin?next=${encodeURIComponent(event.url.pathname)}`)
  throw event.error((result.left.status === 0 ? 502 : result.left.status) as 500, result.left.message)
}
