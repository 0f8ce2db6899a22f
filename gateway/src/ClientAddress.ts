import { randomBytes, timingSafeEqual } from "node:crypto"
import type { IncomingMessage } from "node:http"
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
 * The peer's address, or, when the peer is a trusted reverse proxy, the rightmost `X-Forwarded-For`
 * entry that is not one (a client can write the entries to the left itself).
 */
const forwarded = (peer: string | undefined, forwardedFor: string | undefined, trusted: ReadonlySet<string>) => {
  if (peer === undefined || !trusted.has(bare(peer))) return peer
  const hops = (forwardedFor ?? "")
    .split(",")
    .map((h) => bare(h.trim()))
    .filter((h) => h !== "")
  for (let i = hops.length - 1; i >= 0; i--) if (!trusted.has(hops[i]!)) return hops[i]
  return peer
}

/**
 * The web app's server side runs in the gateway's process and calls the API on loopback, so the peer
 * of its calls is the gateway itself. Where the browser's address matters (sign-in), it sends it in
 * `ADDRESS_HEADER` with this process's random key in `KEY_HEADER`; a request without the key cannot
 * set the address that way.
 */
const ADDRESS_HEADER = "x-sam-web-client-address"
/** a secret of this process: never recorded with a request's other headers (the tracer redacts it) */
export const KEY_HEADER = "x-sam-web-key"
const webKey = randomBytes(32)

const isWebKey = (value: string) => {
  const given = Buffer.from(value, "base64url")
  return given.length === webKey.length && timingSafeEqual(given, webKey)
}

/** The headers with which the web app's server side says whose request it is calling for. */
export const webClientHeaders = (address: string | undefined): Record<string, string> =>
  address === undefined ? {} : { [ADDRESS_HEADER]: address, [KEY_HEADER]: webKey.toString("base64url") }

/** The browser's address of a request to the web app, as `clientAddress` would see it. */
export const webRequestAddress = (
  req: Pick<IncomingMessage, "socket" | "headers">,
  trusted: ReadonlySet<string> = trustedProxies()
) => {
  const forwardedFor = req.headers["x-forwarded-for"]
  return forwarded(
    req.socket.remoteAddress,
    Array.isArray(forwardedFor) ? forwardedFor.join(",") : forwardedFor,
    trusted
  )
}

/**
 * The client's address for per-address limits (sign-in throttling, the boot routes): the peer's, or,
 * when the peer is a trusted reverse proxy, the rightmost `X-Forwarded-For` entry that is not one.
 * Without trusted proxies the header is ignored. A call of the web app on behalf of a browser
 * (`webClientHeaders`) counts as that browser's.
 */
export const clientAddress = (
  request: HttpServerRequest.HttpServerRequest,
  trusted: ReadonlySet<string> = trustedProxies()
): string | undefined => {
  const key = request.headers[KEY_HEADER]
  const address = request.headers[ADDRESS_HEADER]
  if (key !== undefined && address !== undefined && address !== "" && isWebKey(key)) return address
  return forwarded(Option.getOrUndefined(request.remoteAddress), request.headers["x-forwarded-for"], trusted)
}
