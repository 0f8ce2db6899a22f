import { z } from "zod"
import { endpoint } from "./Endpoint.js"

/**
 * A user's cloud account for nodes of their own (ADR 0026): a Hetzner Cloud API token, checked against
 * Hetzner when it is saved, kept encrypted, and never returned: the API says only whether one is set
 * and since when.
 */
export const CloudCredentialStatus = z.object({
  provider: z.literal("hetzner"),
  configured: z.boolean(),
  validatedAt: z.iso.datetime().nullable(),
  updatedAt: z.iso.datetime().nullable()
})
export type CloudCredentialStatus = z.infer<typeof CloudCredentialStatus>

/** Hetzner's API tokens are 64 characters of [A-Za-z0-9]; a little room either way, no whitespace inside. */
export const SetHetznerTokenRequest = z.object({
  token: z
    .string()
    .trim()
    .min(32, "a Hetzner API token is 64 characters long")
    .max(200)
    .regex(/^[A-Za-z0-9_-]+$/, "a Hetzner API token has letters and digits only")
})

export const CloudEndpoints = {
  listCloudCredentials: endpoint({
    method: "GET",
    path: "/cloud-credentials",
    summary: "Your cloud accounts for nodes (whether a token is set, never the token)",
    tag: "cloud",
    response: z.object({ credentials: z.array(CloudCredentialStatus) })
  }),
  setHetznerToken: endpoint({
    method: "PUT",
    path: "/cloud-credentials/hetzner",
    summary:
      "Set or replace your Hetzner Cloud API token; checked against Hetzner, stored encrypted, never shown again",
    tag: "cloud",
    body: SetHetznerTokenRequest,
    response: CloudCredentialStatus
  }),
  deleteHetznerToken: endpoint({
    method: "DELETE",
    path: "/cloud-credentials/hetzner",
    summary: "Remove your Hetzner Cloud API token",
    tag: "cloud",
    response: CloudCredentialStatus
  })
}
