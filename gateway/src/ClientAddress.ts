import type { HttpServerRequest } from "@effect/platform"
import { Option } from "effect"

/** `SAM_TRUSTED_PROXIES`: addresses of reverse proxies in front of the gateway (comma separated), none by default. */
export const trustedProxies = (env: NodeJS.ProcessEnv = process.env) =>
  new Set(
    (env.SAM_TRUSTED_PROXIES ?? "")
      .split(",")
      .map((a) => a.trim())
      .filter((a) => a !== "")
  )

const bare = (address: string) => address.replace(/^::ffff:/, "")

/**
 * The client's address for per-address limits (sign-in throttling, the boot routes): the peer's, or,
 * when the peer is a trusted reverse proxy, the rightmost `X-Forwarded-For` entry that is not one (a
 * client can write the entries to the left itself). Without trusted proxies the header is ignored.
 */
export const clientAddress = (
  request: HttpServerRequest.HttpServerRequest,
  trusted: ReadonlySet<string> = trustedProxies()
): string | undefined => {
  const peer = Option.getOrUndefined(request.remoteAddress)
  if (peer === undefined || !trusted.has(bare(peer))) return peer
  const hops = (request.headers["x-forwarded-for"] ?? "")
    .split(",")
    .map((h) => bare(h.trim()))
    .filter((h) => h !== "")
  for (let i = hops.length - 1; i >= 0; i--) if (!trusted.has(hops[i]!)) return hops[i]
  return peer
}
