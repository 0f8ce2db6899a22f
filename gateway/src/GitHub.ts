import { randomBytes, timingSafeEqual } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { makeId, type UserId } from "@sam/bus"
import { Effect, Redacted } from "effect"
import { z } from "zod"
import { ApiError } from "./ApiError.js"
import type { GitHubOAuth } from "./Config.js"

/** GitHub's documented answers: the token exchange (200 even on error) and `GET /user`. */
const TokenResponse = z.union([
  z.object({
    access_token: z.string().min(1),
    token_type: z.string(),
    scope: z.string().optional(),
    /** a GitHub App's user token that expires (the default: eight hours) comes with a refresh token */
    expires_in: z.number().int().positive().optional(),
    refresh_token: z.string().min(1).optional()
  }),
  z.object({ error: z.string(), error_description: z.string().optional() })
])

/** A user's GitHub token as SAM keeps it (sealed): the access token and, when it expires, how to renew it. */
export interface UserToken {
  readonly accessToken: Redacted.Redacted<string>
  readonly refreshToken?: Redacted.Redacted<string> | undefined
  readonly expiresAt?: Date | undefined
}

const userTokenOf = (data: {
  access_token: string
  expires_in?: number | undefined
  refresh_token?: string | undefined
}) =>
  ({
    accessToken: Redacted.make(data.access_token),
    ...(data.refresh_token === undefined ? {} : { refreshToken: Redacted.make(data.refresh_token) }),
    ...(data.expires_in === undefined ? {} : { expiresAt: new Date(Date.now() + data.expires_in * 1000) })
  }) satisfies UserToken
const GitHubUser = z.object({ id: z.number().int().positive(), login: z.string().min(1), name: z.string().nullish() })
/** `GET /user/memberships/orgs/{org}`: 200 with the membership, 404 when the user is not in the organization. */
const OrgMembership = z.object({ state: z.enum(["active", "pending"]), organization: z.object({ login: z.string() }) })

export const STATE_COOKIE = "sam_oauth_state"
export const newState = () => randomBytes(24).toString("base64url")

export const authorizeUrl = (github: GitHubOAuth, redirectUri: string, state: string) => {
  const url = new URL("/login/oauth/authorize", github.webUrl)
  url.searchParams.set("client_id", github.clientId)
  url.searchParams.set("redirect_uri", redirectUri)
  // Organization membership needs `read:org` (GitHub shows it on the consent page); logins alone need nothing more.
  url.searchParams.set("scope", (github.allowedOrgs ?? []).length > 0 ? "read:user read:org" : "read:user")
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

/** True when the configuration lets nobody in: say so before sending anyone to GitHub. */
export const nobodyAllowed = (github: GitHubOAuth) =>
  github.allowAny !== true && (github.allowedLogins ?? []).length === 0 && (github.allowedOrgs ?? []).length === 0

export const NOBODY_ALLOWED =
  "GitHub sign-in lets nobody in yet: the operator must set SAM_GITHUB_ALLOWED_LOGINS (GitHub logins) " +
  "and/or SAM_GITHUB_ALLOWED_ORGS (GitHub organizations whose members may sign in), " +
  "or SAM_GITHUB_ALLOW_ANY=1 to let any GitHub account in"

const apiHeaders = (accessToken: string) => ({
  accept: "application/vnd.github+json",
  authorization: `Bearer ${accessToken}`,
  "x-github-api-version": "2022-11-28",
  "user-agent": "sam-gateway"
})

/**
 * May this GitHub user sign in? A listed login, or an active member (not a pending invitation) of a
 * listed organization, asked of GitHub with the user's token, one organization at a time.
 */
const allowed = Effect.fn("GitHub.allowed")(function* (github: GitHubOAuth, login: string, accessToken: string) {
  if (github.allowAny === true) return true
  if ((github.allowedLogins ?? []).includes(login)) return true
  for (const org of github.allowedOrgs ?? []) {
    const answer = yield* fetchJson(
      new URL(`/user/memberships/orgs/${encodeURIComponent(org)}`, github.apiUrl).toString(),
      { headers: apiHeaders(accessToken) }
    )
    const membership = OrgMembership.safeParse(answer.body)
    if (answer.status === 200 && membership.success && membership.data.state === "active") return true
    if (answer.status !== 200 && answer.status !== 404 && answer.status !== 403) {
      return yield* new ApiError({
        code: "unavailable",
        message: `GitHub did not say whether you are in ${org} (it answered ${answer.status}); try again`
      })
    }
  }
  return false
})

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
 * check that it may sign in here (an allowed login or organization), and find or create that user
 * (by GitHub's numeric id, which survives a rename). GitHub's access token is returned, redacted, for
 * the caller to keep sealed when a GitHub App needs it (calls made as the user); it is stored nowhere else.
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
    headers: apiHeaders(token.data.access_token)
  })
  const user = GitHubUser.safeParse(fetched.body)
  if (fetched.status !== 200 || !user.success) {
    return yield* refused(`GitHub did not say who you are (GET /user answered ${fetched.status})`)
  }
  const login = user.data.login.toLowerCase()
  if (nobodyAllowed(github)) return yield* new ApiError({ code: "forbidden", message: NOBODY_ALLOWED })
  // Checked before any row is written: a refused GitHub user leaves no account behind.
  if (!(yield* allowed(github, login, token.data.access_token))) {
    const orgs = github.allowedOrgs ?? []
    return yield* new ApiError({
      code: "forbidden",
      message:
        `GitHub user ${user.data.login} may not sign in here: ask the operator to add the login to ` +
        `SAM_GITHUB_ALLOWED_LOGINS${orgs.length > 0 ? `, or to make you an active member of ${orgs.join(" or ")}` : ""}`
    })
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
  return { userId, accessToken: Redacted.make(token.data.access_token), token: userTokenOf(token.data) }
})

/**
 * Renew an expiring user token with its refresh token (`grant_type=refresh_token`; GitHub answers 200 with
 * `bad_refresh_token` for a used or expired one). The refresh token is single use: the new one replaces it.
 */
export const refreshUserToken = Effect.fn("GitHub.refreshUserToken")(function* (
  github: GitHubOAuth,
  refreshToken: Redacted.Redacted<string>
) {
  const answer = yield* fetchJson(new URL("/login/oauth/access_token", github.webUrl).toString(), {
    method: "POST",
    headers: { accept: "application/json", "content-type": "application/json" },
    body: JSON.stringify({
      client_id: github.clientId,
      client_secret: Redacted.value(github.clientSecret),
      grant_type: "refresh_token",
      refresh_token: Redacted.value(refreshToken)
    })
  })
  const token = TokenResponse.safeParse(answer.body)
  if (!token.success) return yield* refused(`GitHub answered the token refresh with ${answer.status}`)
  if ("error" in token.data) {
    return yield* refused(`GitHub refused the token refresh: ${token.data.error_description ?? token.data.error}`)
  }
  return userTokenOf(token.data)
})
