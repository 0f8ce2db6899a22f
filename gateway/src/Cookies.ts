import { HttpServerResponse } from "@effect/platform"
import { Api } from "@sam/bus"
import { SESSION_COOKIE } from "./Auth.js"
import { STATE_COOKIE } from "./GitHub.js"

/**
 * HttpOnly (no script reads them) and SameSite=Lax (a cross-site POST does not carry them). Lax does not
 * keep a page of the same site on another port from sending them (a dev server on localhost:5173), so a
 * request signed in by the cookie must also come from the gateway's own pages (`SameOrigin.ts`).
 */
const base = { path: "/", httpOnly: true, sameSite: "lax" } as const

export const setSession = (response: HttpServerResponse.HttpServerResponse, token: string, expiresAt: string) =>
  HttpServerResponse.unsafeSetCookie(response, SESSION_COOKIE, token, {
    ...base,
    maxAge: `${Math.max(0, Math.floor((Date.parse(expiresAt) - Date.now()) / 1000))} seconds`
  })

export const clearSession = (response: HttpServerResponse.HttpServerResponse) =>
  HttpServerResponse.expireCookie(response, SESSION_COOKIE, base)

const statePath = { ...base, path: `${Api.PREFIX}/auth/github` }

export const setOAuthState = (response: HttpServerResponse.HttpServerResponse, state: string) =>
  HttpServerResponse.unsafeSetCookie(response, STATE_COOKIE, state, { ...statePath, maxAge: "10 minutes" })

export const clearOAuthState = (response: HttpServerResponse.HttpServerResponse) =>
  HttpServerResponse.expireCookie(response, STATE_COOKIE, statePath)
