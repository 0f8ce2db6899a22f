import { z } from "zod"
import { ApiTokenId, UserId } from "../Ids.js"

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
  login: z.string().min(1).max(64),
  password: z.string().min(1).max(1024)
})
export const LoginResponse = z.object({
  userId: UserId,
  /** a bearer token for this browser session; also set as the `sam_session` HttpOnly cookie */
  sessionToken: z.string(),
  expiresAt: z.iso.datetime()
})

export const CreateApiTokenRequest = z.object({
  name: z.string().trim().min(1).max(100),
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
