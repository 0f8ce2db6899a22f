import { z } from "zod"
import { endpoint } from "./Endpoint.js"

/** How long the credentials live; capped by the API token's own expiry. Default 30 days. */
export const MintNatsCredentialsRequest = z.object({
  expiresInDays: z.number().int().min(1).max(365).optional()
})

/**
 * NATS credentials bound to the API token that minted them (ADR 0011). This response is the only
 * place `creds` ever appears: it is not stored, and it is a secret (a JWT and its private seed).
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
