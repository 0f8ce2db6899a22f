import { SqlClient } from "@effect/sql"
import { Api, NatsAccounts, Subjects } from "@sam/bus"
import { Effect, Option, Redacted } from "effect"
import { ApiError } from "../ApiError.js"
import { GatewayConfig } from "../Config.js"
import * as Route from "../Route.js"

const DEFAULT_HOURS = 12
const HOUR_MS = 3_600_000

/**
 * `POST /nats/credentials` (ADR 0011, 0016): a NATS user of the caller's API token's own account,
 * which imports only `sam.in.<userId>.<tokenId>.>` from SAM; the user may publish only there and
 * receive replies only under its own inbox prefix. Revoking the token revokes the account's users at
 * the server (and the ingress still checks the token on every request). A browser session cannot
 * mint (there is no token to bind them to). The creds are never logged.
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
      const accounts = yield* Effect.serviceOption(NatsAccounts.NatsAccounts)
      if (Option.isNone(accounts)) {
        return yield* new ApiError({ code: "unavailable", message: "this gateway cannot mint NATS credentials" })
      }
      const sql = yield* SqlClient.SqlClient
      const tokens = yield* sql<{ expiresAt: Date | null }>`
        SELECT expires_at FROM api_tokens WHERE id = ${principal.credentialId}`.pipe(Effect.orDie)
      const tokenExpiry = tokens[0]?.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY
      const now = Date.now()
      const expiresAtMs = Math.min(now + (body.expiresInHours ?? DEFAULT_HOURS) * HOUR_MS, tokenExpiry)
      const { userId, credentialId: tokenId } = principal
      const minted = yield* accounts.value
        .clientCredentials(userId, tokenId, Math.max(1, Math.floor((expiresAtMs - now) / 1000)))
        .pipe(Effect.orDie)
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
