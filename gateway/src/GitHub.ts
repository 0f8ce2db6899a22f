import { randomBytes, timingSafeEqual } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { makeId, type UserId } from "@sam/bus"
import { Effect, Redacted } from "effect"
import { z } from "zod"
import { ApiError } from "./ApiError.js"
import type { GitHubOAuth } from "./Config.js"

/** GitHub's documented answers: the token exchange (200 even on error) and `GET /user`. */
const TokenResponse = z.union([
  z.object({ access_token: z.string().min(1), token_type: z.string(), scope: z.string().optional() }),
  z.object({ error: z.string(), error_description: z.string().optional() })
])
const GitHubUser = z.object({ id: z.number().int().positive(), login: z.string().min(1), name: z.string().nullish() })

export const STATE_COOKIE = "sam_oauth_state"
export const newState = () => randomBytes(24).toString("base64url")

export const authorizeUrl = (github: GitHubOAuth, redirectUri: string, state: string) => {
  const url = new URL("/login/oauth/authorize", github.webUrl)
  url.searchParams.set("client_id", github.clientId)
  url.searchParams.set("redirect_uri", redirectUri)
  url.searchParams.set("scope", "read:user")
  url.searchParams.set("state", state)
  url.searchParams.set("allow_signup", "false")
  return url.toString()
}

export const sameState = (expected: string | undefined, actual: string | undefined) =>
  expected !== undefined &&
  actual !== undefined &&
  expected.length === actual.length &&
  timingSafeEqual(Buffer.from(expected), Buffer.from(actual))

const refused = (message: string) => new ApiError({ code: "unauthenticated", message })

const fetchJson = (url: string, init: RequestInit) =>
  Effect.tryPromise({
    try: async () => {
      const response = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) })
      return { status: response.status, body: (await response.json()) as unknown }
    },
    catch: () => new ApiError({ code: "unavailable", message: "GitHub did not answer; try again" })
  })

/**
 * The OAuth web flow's server side: exchange the code for a token, read who it belongs to, and
 * find or create that user (by GitHub's numeric id, which survives a rename). GitHub's access token
 * is used for this one call and never stored.
 */
export const signIn = Effect.fn("GitHub.signIn")(function* (github: GitHubOAuth, code: string, redirectUri: string) {
  const exchanged = yield* fetchJson(new URL("/login/oauth/access_token", github.webUrl).toString(), {
    method: "POST",
    headers: { accept: "application/json", "content-type": "application/json" },
    body: JSON.stringify({
      client_id: github.clientId,
      client_secret: Redacted.value(github.clientSecret),
      code,
      redirect_uri: redirectUri
    })
  })
  const token = TokenResponse.safeParse(exchanged.body)
  if (!token.success) return yield* refused(`GitHub answered the code exchange with ${exchanged.status}`)
  if ("error" in token.data) {
    return yield* refused(`GitHub refused the sign-in: ${token.data.error_description ?? token.data.error}`)
  }
  const fetched = yield* fetchJson(new URL("/user", github.apiUrl).toString(), {
    headers: {
      accept: "application/vnd.github+json",
      authorization: `Bearer ${token.data.access_token}`,
      "x-github-api-version": "2022-11-28",
      "user-agent": "sam-gateway"
    }
  })
  const user = GitHubUser.safeParse(fetched.body)
  if (fetched.status !== 200 || !user.success) {
    return yield* refused(`GitHub did not say who you are (GET /user answered ${fetched.status})`)
  }
  const login = user.data.login.toLowerCase()
  if (github.allowedLogins !== undefined && !github.allowedLogins.includes(login)) {
    return yield* new ApiError({ code: "forbidden", message: `GitHub user ${user.data.login} may not sign in here` })
  }
  const sql = yield* SqlClient.SqlClient
  const userId = yield* sql
    .withTransaction(
      Effect.gen(function* () {
        // A login that moved to another GitHub account (a rename) is taken off the old row first.
        yield* sql`UPDATE users SET github_login = NULL WHERE github_login = ${login} AND github_id <> ${user.data.id}`
        const rows = yield* sql<{ id: UserId }>`
          INSERT INTO users (id, display_name, github_login, github_id)
          VALUES (${makeId("user")}, ${user.data.name ?? user.data.login}, ${login}, ${user.data.id})
          ON CONFLICT (github_id) DO UPDATE SET github_login = excluded.github_login
          RETURNING id`
        return (rows[0] as { id: UserId }).id
      })
    )
    .pipe(Effect.orDie)
  return userId
})
