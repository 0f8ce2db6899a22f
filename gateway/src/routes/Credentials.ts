import { SqlClient } from "@effect/sql"
import { Api, Credentials, Subjects } from "@sam/bus"
import { Effect, Redacted } from "effect"
import { ApiError } from "../ApiError.js"
import { GatewayConfig } from "../Config.js"
import * as Route from "../Route.js"

const DEFAULT_DAYS = 30
const DAY_MS = 86_400_000

/**
 * `POST /nats/credentials` (ADR 0011): a NATS user bound to the caller's API token. The JWT lets it
 * publish only `sam.in.<userId>.<tokenId>.>` and receive replies only under its own inbox prefix; the
 * ingress checks the token on every request, so revoking the token stops these credentials. A
 * browser session cannot mint (there is no token to bind them to). The creds are never logged.
 */
export const routes = [
  Route.make(Api.CredentialsEndpoints.mintNatsCredentials, ({ principal, body }) =>
    Effect.gen(function* () {
      if (principal.via !== "token") {
        return yield* new ApiError({
          code: "forbidden",
          message: "NATS credentials are minted with an API token (Authorization: Bearer sam_pat_…), not a session"
        })
      }
      const config = yield* GatewayConfig
      if (config.signing === undefined) {
        return yield* new ApiError({ code: "unavailable", message: "this gateway cannot mint NATS credentials" })
      }
      const sql = yield* SqlClient.SqlClient
      const tokens = yield* sql<{ expiresAt: Date | null }>`
        SELECT expires_at FROM api_tokens WHERE id = ${principal.credentialId}`.pipe(Effect.orDie)
      const tokenExpiry = tokens[0]?.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY
      const now = Date.now()
      const expiresAtMs = Math.min(now + (body.expiresInDays ?? DEFAULT_DAYS) * DAY_MS, tokenExpiry)
      const { userId, credentialId: tokenId } = principal
      const minted = yield* Credentials.mintUser(
        config.signing,
        `user-${userId}-${tokenId}`,
        Credentials.userPermissions(userId, tokenId),
        { expiresInSeconds: Math.max(1, Math.floor((expiresAtMs - now) / 1000)) }
      ).pipe(Effect.orDie)
      return {
        creds: Redacted.value(minted.creds),
        subjectPrefix: Subjects.ingressPrefix(userId, tokenId),
        inboxPrefix: Subjects.userInboxPrefix(userId, tokenId),
        expiresAt: (minted.expiresAt ?? new Date(expiresAtMs)).toISOString(),
        ...(config.natsUrl === undefined ? {} : { natsUrl: config.natsUrl })
      }
    })
  )
]
