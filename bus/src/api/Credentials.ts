import { z } from "zod"
import { endpoint } from "./Endpoint.js"

/**
 * How long the credentials live, in hours (1-24, default 12; capped by the API token's own expiry).
 * They are short-lived by design (ADR 0016): mint again with the token when they run out.
 */
export const MintNatsCredentialsRequest = z.object({
  expiresInHours: z.number().int().min(1).max(24).optional()
})

/**
 * NATS credentials bound to the API token that minted them (ADR 0011), a user of that token's own
 * NATS account (ADR 0016): revoking the token revokes them at the server at once. This response is
 * the only place `creds` ever appears: it is not stored, and it is a secret (a JWT and its seed).
 */
export const NatsCredentials = z.object({
  /** the `.creds` file content, for `nats --creds <file>` or a client's creds authenticator */
  creds: z.string(),
  /** publish requests to `<subjectPrefix>.<command>`: `sam.in.<userId>.<tokenId>` */
  subjectPrefix: z.string(),
  /** connect with this inbox prefix: replies are allowed only under it */
  inboxPrefix: z.string(),
  expiresAt: z.iso.datetime(),
  /** where to connect, when the gateway knows a URL clients can reach */
  natsUrl: z.string().optional()
})
export type NatsCredentials = z.infer<typeof NatsCredentials>

export const CredentialsEndpoints = {
  mintNatsCredentials: endpoint({
    method: "POST",
    path: "/nats/credentials",
    summary:
      "Mint NATS credentials for request/reply on sam.in.<userId>.<tokenId>.>; needs an API token (not a browser session), and stop working when that token is revoked",
    tag: "auth",
    body: MintNatsCredentialsRequest,
    response: NatsCredentials,
    status: 201
  })
}
