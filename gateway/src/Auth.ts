import { createHash, randomBytes, scrypt, timingSafeEqual } from "node:crypto"
import type { HttpServerRequest } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { type ApiTokenId, makeId, type UserId } from "@sam/bus"
import { Effect, Option } from "effect"
import { ApiError } from "./ApiError.js"

/** The authenticated caller of one request. `credentialId` is the session or API token used. */
export interface Principal {
  readonly userId: UserId
  readonly via: "session" | "token"
  readonly credentialId: string
}

export const SESSION_COOKIE = "sam_session"
const SESSION_DAYS = 14
/** An API token's "last used" is written at most this often (seconds). */
const LAST_USED_STEP_S = 60
const TOKEN_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"

/** 32 characters of base32: 160 random bits, so a plain SHA-256 is a sufficient hash to store. */
const secret = (prefix: "sam_pat_" | "sam_ses_") => {
  let out = prefix
  for (const byte of randomBytes(32)) out += TOKEN_ALPHABET[byte & 31]
  return out
}
export const hashToken = (token: string) => createHash("sha256").update(token).digest("hex")

const scryptAsync = (password: string, salt: Buffer) =>
  new Promise<Buffer>((resolve, reject) =>
    scrypt(password, salt, 32, { N: 16384, r: 8, p: 1 }, (error, key) => (error ? reject(error) : resolve(key)))
  )

/** `scrypt$<salt hex>$<key hex>`: passwords are low-entropy, so they get a slow, salted hash. */
export const hashPassword = (password: string) =>
  Effect.promise(async () => {
    const salt = randomBytes(16)
    return `scrypt$${salt.toString("hex")}$${(await scryptAsync(password, salt)).toString("hex")}`
  })

const verifyPassword = (password: string, stored: string) =>
  Effect.promise(async () => {
    const [scheme, salt, key] = stored.split("$")
    if (scheme !== "scrypt" || salt === undefined || key === undefined) return false
    const expected = Buffer.from(key, "hex")
    const actual = await scryptAsync(password, Buffer.from(salt, "hex"))
    return actual.length === expected.length && timingSafeEqual(actual, expected)
  })

const unauthenticated = (message: string) => new ApiError({ code: "unauthenticated", message })

const bearerOf = (request: HttpServerRequest.HttpServerRequest): string | undefined => {
  const header = request.headers.authorization
  if (header !== undefined) {
    const match = /^Bearer\s+(\S+)$/i.exec(header)
    return match?.[1] ?? ""
  }
  return request.cookies[SESSION_COOKIE]
}

const iso = (value: Date | null) => (value === null ? null : value.toISOString())

interface TokenRow {
  readonly id: ApiTokenId
  readonly name: string
  readonly createdAt: Date
  readonly expiresAt: Date | null
  readonly lastUsedAt: Date | null
  readonly revokedAt: Date | null
}
const toApiToken = (row: TokenRow) => ({
  id: row.id,
  name: row.name,
  createdAt: row.createdAt.toISOString(),
  expiresAt: iso(row.expiresAt),
  lastUsedAt: iso(row.lastUsedAt),
  revokedAt: iso(row.revokedAt)
})

/**
 * Sign-in and credentials (design §9). Browser sessions and API tokens are random bearer tokens
 * stored only as SHA-256 hashes; a token's value is returned once, when it is created. Every
 * lookup checks revocation and expiry, so a revoked token stops working on its next request.
 */
export class Auth extends Effect.Service<Auth>()("sam/Auth", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    /** The principal behind a bearer token (`sam_pat_…` or `sam_ses_…`), or `unauthenticated`. */
    const verify = Effect.fn("Auth.verify")(function* (token: string) {
      const hash = hashToken(token)
      if (token.startsWith("sam_pat_")) {
        // "Last used" is kept to the minute: a program's every request would otherwise be a write.
        const rows = yield* sql<{ id: string; userId: UserId }>`
          WITH found AS (
            SELECT id, user_id, last_used_at FROM api_tokens
            WHERE token_hash = ${hash} AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
          ), touched AS (
            UPDATE api_tokens SET last_used_at = now() FROM found
            WHERE api_tokens.id = found.id
              AND (found.last_used_at IS NULL OR found.last_used_at < now() - make_interval(secs => ${LAST_USED_STEP_S}))
          )
          SELECT id, user_id FROM found`.pipe(Effect.orDie)
        const row = rows[0]
        if (row === undefined) return yield* unauthenticated("the API token is unknown, expired or revoked")
        return { userId: row.userId, via: "token", credentialId: row.id } satisfies Principal
      }
      if (token.startsWith("sam_ses_")) {
        const rows = yield* sql<{ id: string; userId: UserId }>`
          SELECT id, user_id FROM user_sessions
          WHERE token_hash = ${hash} AND revoked_at IS NULL AND expires_at > now()`.pipe(Effect.orDie)
        const row = rows[0]
        if (row === undefined) return yield* unauthenticated("the session has ended; sign in again")
        return { userId: row.userId, via: "session", credentialId: row.id } satisfies Principal
      }
      return yield* unauthenticated("not a SAM token (expected sam_pat_… or sam_ses_…)")
    })

    const authenticate = (request: HttpServerRequest.HttpServerRequest) => {
      const token = bearerOf(request)
      return token === undefined || token === ""
        ? Effect.fail(unauthenticated("sign in, or send an API token as `Authorization: Bearer sam_pat_…`"))
        : verify(token)
    }

    const createSession = Effect.fn("Auth.createSession")(function* (userId: UserId) {
      const token = secret("sam_ses_")
      const id = makeId("uses")
      const expiresAt = new Date(Date.now() + SESSION_DAYS * 86_400_000)
      yield* sql`
        INSERT INTO user_sessions (id, user_id, token_hash, expires_at)
        VALUES (${id}, ${userId}, ${hashToken(token)}, ${expiresAt})`.pipe(Effect.orDie)
      return { userId, sessionToken: token, expiresAt: expiresAt.toISOString() }
    })

    const login = Effect.fn("Auth.login")(function* (login: string, password: string) {
      const rows = yield* sql<{ id: UserId; passwordHash: string | null }>`
        SELECT id, password_hash FROM users WHERE login = ${login.toLowerCase()}`.pipe(Effect.orDie)
      const row = rows[0]
      // The same answer, and about the same time, for an unknown login and a wrong password.
      const ok = yield* verifyPassword(password, row?.passwordHash ?? `scrypt$${"0".repeat(32)}$${"0".repeat(64)}`)
      if (row === undefined || row.passwordHash === null || !ok) {
        return yield* unauthenticated("wrong login or password")
      }
      return yield* createSession(row.id)
    })

    const logout = (principal: Principal) =>
      principal.via === "session"
        ? sql`UPDATE user_sessions SET revoked_at = now() WHERE id = ${principal.credentialId}`.pipe(
            Effect.orDie,
            Effect.asVoid
          )
        : Effect.void

    /**
     * A new API token of `userId`. One made with an API token (`caller`) expires when that token does at the
     * latest: without an expiry it gets the caller's, and a later one is refused. Otherwise a token given out
     * for a day could make itself one that never expires.
     */
    const createToken = Effect.fn("Auth.createToken")(function* (
      userId: UserId,
      input: { readonly name: string; readonly expiresInDays?: number | undefined },
      caller?: Principal
    ) {
      const asked = input.expiresInDays === undefined ? null : new Date(Date.now() + input.expiresInDays * 86_400_000)
      const callerExpiry =
        caller?.via === "token"
          ? ((yield* sql<{ expiresAt: Date | null }>`
              SELECT expires_at FROM api_tokens WHERE id = ${caller.credentialId}`.pipe(Effect.orDie))[0]?.expiresAt ??
            null)
          : null
      if (asked !== null && callerExpiry !== null && asked > callerExpiry) {
        return yield* new ApiError({
          code: "forbidden",
          message:
            `this API token expires at ${callerExpiry.toISOString()} and a token made with it cannot outlive it: ` +
            "ask for fewer days, leave out `expiresInDays` to expire with it, or sign in to make a longer-lived one",
          details: { callerExpiresAt: callerExpiry.toISOString() }
        })
      }
      const expiresAt = asked ?? callerExpiry
      const token = secret("sam_pat_")
      const id = makeId("tok")
      const rows = yield* sql<TokenRow>`
        INSERT INTO api_tokens (id, user_id, name, token_hash, expires_at)
        VALUES (${id}, ${userId}, ${input.name}, ${hashToken(token)}, ${expiresAt})
        RETURNING id, name, created_at, expires_at, last_used_at, revoked_at`.pipe(Effect.orDie)
      return { ...toApiToken(rows[0] as TokenRow), token }
    })

    const listTokens = (userId: UserId) =>
      sql<TokenRow>`
        SELECT id, name, created_at, expires_at, last_used_at, revoked_at FROM api_tokens
        WHERE user_id = ${userId} ORDER BY created_at`.pipe(
        Effect.orDie,
        Effect.map((rows) => rows.map(toApiToken))
      )

    /** Revoke one of the user's own tokens; a second revoke is a no-op that returns the token. */
    const revokeToken = Effect.fn("Auth.revokeToken")(function* (userId: UserId, tokenId: string) {
      const rows = yield* sql<TokenRow>`
        UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())
        WHERE id = ${tokenId} AND user_id = ${userId}
        RETURNING id, name, created_at, expires_at, last_used_at, revoked_at`.pipe(Effect.orDie)
      const row = rows[0]
      if (row === undefined) return yield* new ApiError({ code: "not_found", message: `no API token ${tokenId}` })
      return toApiToken(row)
    })

    /** Is this API token of this user still usable? (NATS ingress checks it on every request.) */
    const tokenActive = (userId: string, tokenId: string) =>
      sql<{ one: number }>`
        SELECT 1 AS one FROM api_tokens
        WHERE id = ${tokenId} AND user_id = ${userId} AND revoked_at IS NULL
          AND (expires_at IS NULL OR expires_at > now())`.pipe(
        Effect.orDie,
        Effect.map((rows) => rows.length > 0)
      )

    const me = Effect.fn("Auth.me")(function* (principal: Principal) {
      const rows = yield* sql<{ id: UserId; login: string | null; displayName: string; githubLogin: string | null }>`
        SELECT id, login, display_name, github_login FROM users WHERE id = ${principal.userId}`.pipe(Effect.orDie)
      return Option.fromNullable(rows[0]).pipe(
        Option.map((row) => ({
          userId: row.id,
          login: row.login,
          displayName: row.displayName,
          githubLogin: row.githubLogin,
          via: principal.via
        }))
      )
    })

    return { authenticate, verify, login, logout, createSession, createToken, listTokens, revokeToken, tokenActive, me }
  })
}) {}
