import { FetchHttpClient } from "@effect/platform"
import { CloudTokenCheck, CloudTokenRefused } from "@sam/gateway"
import { Effect, Layer } from "effect"
import { layer as clientLayer, HetznerClient } from "./HetznerClient.js"

/**
 * The gateway's check of a Hetzner token before it is stored (ADR 0026): `GET /server_types` with it.
 * 401/403 is a refusal (a bad or revoked token); anything else that fails is "unreachable". Hetzner has
 * no read-only probe of write access, so a read-only token passes here and fails at its first create.
 */
export const layer = (options: { readonly apiUrl?: string } = {}) =>
  Layer.effect(
    CloudTokenCheck,
    Effect.map(HetznerClient, (client) =>
      CloudTokenCheck.of({
        hetzner: (token) =>
          client
            .forToken(token)
            .serverTypes()
            .pipe(
              Effect.asVoid,
              Effect.mapError((e) =>
                e._tag === "HetznerApiError" && e.category === "auth_error"
                  ? new CloudTokenRefused({ reason: "refused", message: `${e.status} ${e.code}: ${e.message}` })
                  : new CloudTokenRefused({ reason: "unreachable", message: e.message })
              )
            )
      })
    )
  ).pipe(
    Layer.provide(
      clientLayer({ ...(options.apiUrl === undefined ? {} : { baseUrl: options.apiUrl }), timeout: "10 seconds" }).pipe(
        Layer.provide(FetchHttpClient.layer)
      )
    )
  )
