import type { HttpServerRequest } from "@effect/platform"
import { Effect } from "effect"
import { ApiError } from "./ApiError.js"
import { SESSION_COOKIE } from "./Auth.js"
import { GatewayConfig } from "./Config.js"

/**
 * Signed in by the browser's session cookie: no `Authorization` header (which wins over the cookie). A browser
 * attaches the cookie to requests that pages of other origins make, a bearer header never.
 */
export const byCookie = (request: HttpServerRequest.HttpServerRequest) =>
  request.headers.authorization === undefined && request.cookies[SESSION_COOKIE] !== undefined

const parse = (url: string) => {
  try {
    return new URL(url)
  } catch {
    return undefined
  }
}

/**
 * Whether `origin` is one of this gateway's own pages: its public URL's origin, or the host the browser asked
 * this gateway for (`Host`), which is how a browser that reached it by another name (localhost, a LAN address)
 * sends it. `null` (a sandboxed or opaque page) is no page of ours.
 */
export const isOwnOrigin = (origin: string, host: string | undefined, publicUrl: string) => {
  const page = parse(origin)
  if (page === undefined || page.origin === "null") return false
  if (page.origin === parse(publicUrl)?.origin) return true
  return host !== undefined && host !== "" && parse(`${page.protocol}//${host}`)?.host === page.host
}

/**
 * Refuse (403) a request signed in by the cookie that a page of another origin sent. SameSite=Lax does not
 * stop those of the same site: a page on another port of the same host (a dev server an agent started on
 * localhost:5173) gets the cookie sent with its `<form method=POST>` and its WebSocket. Browsers send
 * `Origin` with every such request; one without it came from no other page (a program, a same-origin GET).
 */
export const requireOwnOrigin = (request: HttpServerRequest.HttpServerRequest) =>
  Effect.gen(function* () {
    const origin = request.headers.origin
    if (origin === undefined) return
    const { publicUrl } = yield* GatewayConfig
    if (isOwnOrigin(origin, request.headers.host, publicUrl)) return
    return yield* new ApiError({
      code: "forbidden",
      message:
        `a request signed in by the session cookie must come from this gateway's own pages (${publicUrl}), not ` +
        `from ${origin}; other clients send \`Authorization: Bearer …\` (behind a proxy, set SAM_PUBLIC_URL to ` +
        "the address browsers use)"
    })
  })
