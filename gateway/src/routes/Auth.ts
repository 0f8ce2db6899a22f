import { HttpServerResponse } from "@effect/platform"
import { Api, ApiTokenId } from "@sam/bus"
import { Effect, Option } from "effect"
import { z } from "zod"
import { ApiError } from "../ApiError.js"
import { Auth, SESSION_COOKIE } from "../Auth.js"
import * as Route from "../Route.js"

const sessionCookie = (value: string, maxAgeSeconds: number) =>
  `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${maxAgeSeconds}`

export const routes = [
  Route.make(
    {
      method: "POST",
      path: "/auth/login",
      summary: "Sign in with a login and password (the local owner account); sets the session cookie",
      tag: "auth",
      auth: false,
      body: Api.LoginRequest,
      response: Api.LoginResponse
    },
    ({ body }) =>
      Effect.gen(function* () {
        const session = yield* (yield* Auth).login(body.login, body.password)
        const maxAge = Math.floor((Date.parse(session.expiresAt) - Date.now()) / 1000)
        return {
          response: HttpServerResponse.unsafeJson(Api.LoginResponse.parse(session), {
            headers: { "set-cookie": sessionCookie(session.sessionToken, maxAge) }
          })
        }
      })
  ),
  Route.make(
    { method: "POST", path: "/auth/logout", summary: "End this browser session", tag: "auth", response: z.object({}) },
    ({ principal }) =>
      Effect.gen(function* () {
        yield* (yield* Auth).logout(principal)
        return {
          response: HttpServerResponse.unsafeJson({}, { headers: { "set-cookie": sessionCookie("", 0) } })
        }
      })
  ),
  Route.make({ method: "GET", path: "/me", summary: "Who am I", tag: "auth", response: Api.Me }, ({ principal }) =>
    Effect.gen(function* () {
      const me = yield* (yield* Auth).me(principal)
      if (Option.isNone(me)) return yield* new ApiError({ code: "unauthenticated", message: "the user is gone" })
      return me.value
    })
  ),
  Route.make(
    {
      method: "POST",
      path: "/tokens",
      summary: "Create an API token; its value is in this response only",
      tag: "auth",
      body: Api.CreateApiTokenRequest,
      response: Api.CreatedApiToken,
      status: 201
    },
    ({ principal, body }) => Effect.flatMap(Auth, (auth) => auth.createToken(principal.userId, body))
  ),
  Route.make(
    {
      method: "GET",
      path: "/tokens",
      summary: "List my API tokens (never their values)",
      tag: "auth",
      response: Api.ApiTokenList
    },
    ({ principal }) =>
      Effect.flatMap(Auth, (auth) => auth.listTokens(principal.userId)).pipe(Effect.map((tokens) => ({ tokens })))
  ),
  Route.make(
    {
      method: "DELETE",
      path: "/tokens/:tokenId",
      summary: "Revoke an API token: it stops working over HTTP and NATS at once",
      tag: "auth",
      params: z.object({ tokenId: ApiTokenId }),
      response: Api.ApiToken
    },
    ({ principal, params }) => Effect.flatMap(Auth, (auth) => auth.revokeToken(principal.userId, params.tokenId))
  )
]
