import { HttpServerResponse } from "@effect/platform"
import { Api } from "@sam/bus"
import { Effect } from "effect"
import { ApiError } from "../ApiError.js"
import { Auth } from "../Auth.js"
import { GatewayConfig } from "../Config.js"
import * as Cookies from "../Cookies.js"
import * as GitHub from "../GitHub.js"
import * as Installations from "../GitHubInstallations.js"
import * as Route from "../Route.js"

const E = Api.GitHubEndpoints
const CALLBACK = `${Api.PREFIX}/auth/github/callback`

const configured = Effect.gen(function* () {
  const config = yield* GatewayConfig
  if (config.github === undefined) {
    return yield* new ApiError({
      code: "not_found",
      message: "GitHub sign-in is not configured (set SAM_GITHUB_CLIENT_ID and SAM_GITHUB_CLIENT_SECRET)"
    })
  }
  return { github: config.github, redirectUri: `${config.publicUrl}${CALLBACK}` }
})

export const routes = [
  Route.make(E.githubStart, () =>
    Effect.gen(function* () {
      const { github, redirectUri } = yield* configured
      if (GitHub.nobodyAllowed(github))
        return yield* new ApiError({ code: "forbidden", message: GitHub.NOBODY_ALLOWED })
      const state = GitHub.newState()
      return {
        response: Cookies.setOAuthState(
          HttpServerResponse.redirect(GitHub.authorizeUrl(github, redirectUri, state), { status: 302 }),
          state
        )
      }
    })
  ),
  Route.make(E.githubCallback, ({ query, request }) =>
    Effect.gen(function* () {
      const { github, redirectUri } = yield* configured
      if (query.error !== undefined) {
        return yield* new ApiError({
          code: "unauthenticated",
          message: `GitHub sign-in was not completed: ${query.error_description ?? query.error}`
        })
      }
      if (query.code === undefined || !GitHub.sameState(request.cookies[GitHub.STATE_COOKIE], query.state)) {
        return yield* new ApiError({
          code: "invalid_query",
          message: "this sign-in link has expired or was opened in another browser; start again at /api/v1/auth/github"
        })
      }
      const { userId, token } = yield* GitHub.signIn(github, query.code, redirectUri)
      // Kept (sealed) only for a GitHub App: installation discovery and repositories are asked as the user.
      if ((yield* GatewayConfig).githubApp !== undefined) yield* Installations.rememberToken(userId, token)
      const session = yield* (yield* Auth).createSession(userId)
      const redirect = HttpServerResponse.redirect("/", { status: 302 })
      return {
        response: Cookies.clearOAuthState(Cookies.setSession(redirect, session.sessionToken, session.expiresAt))
      }
    })
  )
]
