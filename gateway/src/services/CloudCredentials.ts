import { SqlClient } from "@effect/sql"
import type { Api } from "@sam/bus"
import { SecretBox } from "@sam/sql"
import { Effect, Option, Redacted } from "effect"
import type { z } from "zod"
import { ApiError } from "../ApiError.js"
import type { Principal } from "../Auth.js"
import { CloudTokenCheck } from "../CloudTokenCheck.js"

interface Row {
  readonly validatedAt: Date
  readonly updatedAt: Date
}

const view = (row: Row | undefined): Api.CloudCredentialStatus => ({
  provider: "hetzner",
  configured: row !== undefined,
  validatedAt: row?.validatedAt.toISOString() ?? null,
  updatedAt: row?.updatedAt.toISOString() ?? null
})

export const list = Effect.fn("CloudCredentials.list")(function* (principal: Principal) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<Row>`
    SELECT validated_at, updated_at FROM cloud_credentials
    WHERE user_id = ${principal.userId} AND provider = 'hetzner'`.pipe(Effect.orDie)
  return { credentials: [view(rows[0])] }
})

/**
 * Check the token with Hetzner (a bad one is a 400 that says Hetzner refused it), then store it sealed.
 * Nothing is written unless Hetzner accepted it; the token is in no log and no answer.
 */
export const setHetzner = Effect.fn("CloudCredentials.setHetzner")(function* (
  principal: Principal,
  input: z.output<typeof Api.SetHetznerTokenRequest>
) {
  const check = yield* Effect.serviceOption(CloudTokenCheck)
  if (Option.isNone(check))
    return yield* new ApiError({ code: "unavailable", message: "this gateway cannot check cloud tokens" })
  yield* check.value
    .hetzner(Redacted.make(input.token))
    .pipe(
      Effect.mapError((e) =>
        e.reason === "refused"
          ? new ApiError({ code: "invalid_body", message: `Hetzner refused this token: ${e.message}` })
          : new ApiError({ code: "unavailable", message: `Hetzner cannot be reached to check the token: ${e.message}` })
      )
    )
  const sealed = yield* SecretBox.seal(input.token).pipe(
    Effect.mapError(
      (e) => new ApiError({ code: "unavailable", message: `secrets cannot be stored here: ${e.message}` })
    )
  )
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<Row>`
    INSERT INTO cloud_credentials (user_id, provider, sealed, validated_at)
    VALUES (${principal.userId}, 'hetzner', ${sealed}, now())
    ON CONFLICT (user_id, provider) DO UPDATE SET sealed = excluded.sealed, validated_at = now(), updated_at = now()
    RETURNING validated_at, updated_at`.pipe(Effect.orDie)
  return view(rows[0])
})

export const removeHetzner = Effect.fn("CloudCredentials.removeHetzner")(function* (principal: Principal) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql`
    DELETE FROM cloud_credentials WHERE user_id = ${principal.userId} AND provider = 'hetzner' RETURNING 1`.pipe(
    Effect.orDie
  )
  if (rows.length === 0) return yield* new ApiError({ code: "not_found", message: "you have no Hetzner token set" })
  return view(undefined)
})
