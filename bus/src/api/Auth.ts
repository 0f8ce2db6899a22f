import { z } from "zod"
import { ApiTokenId, UserId } from "../Ids.js"
import { endpoint } from "./Endpoint.js"
import { storable } from "./Text.js"

/** Who is calling: the signed-in user. Never carries a password, a token or a hash. */
export const Me = z.object({
  userId: UserId,
  login: z.string().nullable(),
  displayName: z.string(),
  githubLogin: z.string().nullable(),
  /** how this request was authenticated */
  via: z.enum(["session", "token"])
})
export type Me = z.infer<typeof Me>

export const LoginRequest = z.object({
  login: storable(z.string().min(1).max(64)),
  password: z.string().min(1).max(1024)
})
export const LoginResponse = z.object({
  userId: UserId,
  /** a bearer token for this browser session; also set as the `sam_session` HttpOnly cookie */
  sessionToken: z.string(),
  expiresAt: z.iso.datetime()
})

export const CreateApiTokenRequest = z.object({
  name: storable(z.string().trim().min(1).max(100)),
  /** days until it expires; none means it lives until revoked */
  expiresInDays: z.number().int().min(1).max(3650).optional()
})

/** An API token as listed: never its value. */
export const ApiToken = z.object({
  id: ApiTokenId,
  name: z.string(),
  createdAt: z.iso.datetime(),
  expiresAt: z.iso.datetime().nullable(),
  lastUsedAt: z.iso.datetime().nullable(),
  revokedAt: z.iso.datetime().nullable()
})
export type ApiToken = z.infer<typeof ApiToken>

/** The one response that carries a token's value: its creation. It is not stored and cannot be shown again. */
export const CreatedApiToken = ApiToken.extend({ token: z.string() })
export type CreatedApiToken = z.infer<typeof CreatedApiToken>

export const ApiTokenList = z.object({ tokens: z.array(ApiToken) })

const TokenParams = z.object({ tokenId: ApiTokenId })

export const AuthEndpoints = {
  login: endpoint({
    method: "POST",
    path: "/auth/login",
    summary: "Sign in with a login and password (the local owner account); sets the session cookie",
    tag: "auth",
    auth: false,
    body: LoginRequest,
    response: LoginResponse
  }),
  logout: endpoint({
    method: "POST",
    path: "/auth/logout",
    summary: "End this browser session",
    tag: "auth",
    response: z.object({})
  }),
  me: endpoint({ method: "GET", path: "/me", summary: "Who am I", tag: "auth", response: Me }),
  createToken: endpoint({
    method: "POST",
    path: "/tokens",
    summary: "Create an API token; its value is in this response only",
    tag: "auth",
    body: CreateApiTokenRequest,
    response: CreatedApiToken,
    status: 201
  }),
  listTokens: endpoint({
    method: "GET",
    path: "/tokens",
    summary: "List my API tokens (never their values)",
    tag: "auth",
    response: ApiTokenList
  }),
  revokeToken: endpoint({
    method: "DELETE",
    path: "/tokens/:tokenId",
    summary: "Revoke an API token: it stops working over HTTP and NATS at once",
    tag: "auth",
    params: TokenParams,
    response: ApiToken
  })
}

export const GitHubCallbackQuery = z.object({
  code: z.string().min(1).max(512).optional(),
  state: z.string().min(1).max(512).optional(),
  error: z.string().max(200).optional(),
  error_description: z.string().max(2000).optional()
})

/** GitHub sign-in (deployments): redirects, not JSON, on success. */
export const GitHubEndpoints = {
  githubStart: endpoint({
    method: "GET",
    path: "/auth/github",
    summary: "Start signing in with GitHub: redirects to GitHub's authorize page",
    tag: "auth",
    auth: false,
    response: z.object({}),
    status: 302
  }),
  githubCallback: endpoint({
    method: "GET",
    path: "/auth/github/callback",
    summary: "GitHub redirects here; signs the user in (session cookie) and redirects to the app",
    tag: "auth",
    auth: false,
    query: GitHubCallbackQuery,
    response: z.object({}),
    status: 302
  })
}
