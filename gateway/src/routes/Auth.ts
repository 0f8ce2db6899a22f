import { HttpServerResponse } from "@effect/platform"
import { Api } from "@sam/bus"
import { Effect, Option } from "effect"
import { ApiError } from "../ApiError.js"
import { Auth } from "../Auth.js"
import { clientAddress } from "../ClientAddress.js"
import * as Cookies from "../Cookies.js"
import { LoginThrottle } from "../LoginThrottle.js"
import { Revocation } from "../Revocation.js"
import * as Route from "../Route.js"

const E = Api.AuthEndpoints

export const routes = [
  Route.make(E.login, ({ body, request }) =>
    Effect.gen(function* () {
      const throttle = yield* LoginThrottle
      const address = clientAddress(request)
      yield* throttle.begin(body.login, address)
      const session = yield* (yield* Auth).login(body.login, body.password)
      yield* throttle.succeeded(body.login, address)
      const response = HttpServerResponse.unsafeJson(Api.LoginResponse.parse(session))
      return { response: Cookies.setSession(response, session.sessionToken, session.expiresAt) }
    })
  ),
  Route.make(E.logout, ({ principal }) =>
    Effect.gen(function* () {
      yield* (yield* Auth).logout(principal)
      if (principal.via === "session") {
        yield* (yield* Revocation).revoked({
          userId: principal.userId,
          credentialId: principal.credentialId,
          reason: "signed out"
        })
      }
      return { response: Cookies.clearSession(HttpServerResponse.unsafeJson({})) }
    })
  ),
  Route.make(E.me, ({ principal }) =>
    Effect.gen(function* () {
      const me = yield* (yield* Auth).me(principal)
      if (Option.isNone(me)) return yield* new ApiError({ code: "unauthenticated", message: "the user is gone" })
      return me.value
    })
  ),
  Route.make(E.createToken, ({ principal, body }) =>
    Effect.flatMap(Auth, (auth) => auth.createToken(principal.userId, body, principal))
  ),
  Route.make(E.listTokens, ({ principal }) =>
    Effect.flatMap(Auth, (auth) => auth.listTokens(principal.userId)).pipe(Effect.map((tokens) => ({ tokens })))
  ),
  Route.make(E.revokeToken, ({ principal, params }) =>
    Effect.gen(function* () {
      const token = yield* (yield* Auth).revokeToken(principal.userId, params.tokenId)
      yield* (yield* Revocation).revoked({
        userId: principal.userId,
        credentialId: token.id,
        reason: "the API token was revoked"
      })
      return token
    })
  )
]
