import { Context, Effect, Layer } from "effect"
import { ApiError } from "./ApiError.js"

/** How password sign-in is throttled. Each key (an account's login, a client address) counts alone. */
export interface ThrottleOptions {
  /** attempts per login before the growing delays start (a success clears the login's count) */
  readonly freePerLogin: number
  /** attempts per address before the growing delays start (many people may share an address) */
  readonly freePerAddress: number
  /** the first delay; each further attempt doubles it */
  readonly baseDelayMs: number
  readonly maxDelayMs: number
  /** a key with no attempt for this long starts over */
  readonly forgetAfterMs: number
}

export const defaults: ThrottleOptions = {
  freePerLogin: 5,
  freePerAddress: 20,
  baseDelayMs: 1_000,
  maxDelayMs: 15 * 60_000,
  forgetAfterMs: 60 * 60_000
}

interface Entry {
  attempts: number
  lockedUntil: number
  lastAt: number
}

/** Keys kept at most; past this, the oldest are forgotten (a flood of made-up logins cannot grow it without end). */
const MAX_KEYS = 50_000

/**
 * Per-login and per-address throttling of password sign-in, in this gateway's memory. An attempt
 * counts when it starts (so a burst of parallel guesses is throttled too) and a success takes it
 * back. Past the free attempts, each one locks the key for twice as long as the one before (1 s,
 * 2 s, 4 s … up to 15 min); while locked the gateway answers 429 `rate_limited` with `Retry-After`
 * without looking at the password, for a wrong one and a right one alike. Unknown logins count
 * like known ones, so the answers say nothing about which exist.
 */
export const make = (options: ThrottleOptions = defaults) => {
  const entries = new Map<string, Entry>()
  const entry = (key: string, now: number) => {
    const found = entries.get(key)
    if (found !== undefined && now - found.lastAt < options.forgetAfterMs) return found
    if (found === undefined && entries.size >= MAX_KEYS) {
      for (const [old] of entries) {
        entries.delete(old)
        if (entries.size < MAX_KEYS * 0.9) break
      }
    }
    const fresh: Entry = { attempts: 0, lockedUntil: 0, lastAt: now }
    entries.set(key, fresh)
    return fresh
  }
  const keys = (login: string, address: string | undefined) => [
    { key: `login:${login.toLowerCase()}`, free: options.freePerLogin },
    ...(address === undefined ? [] : [{ key: `addr:${address}`, free: options.freePerAddress }])
  ]

  /** Start an attempt: fails with 429 while any key is locked; otherwise counts it. */
  const begin = (login: string, address: string | undefined) =>
    Effect.suspend(() => {
      const now = Date.now()
      const all = keys(login, address).map((k) => ({ ...k, entry: entry(k.key, now) }))
      const wait = Math.max(0, ...all.map((k) => k.entry.lockedUntil - now))
      if (wait > 0) {
        const retryAfter = Math.ceil(wait / 1000)
        return Effect.fail(
          new ApiError({
            code: "rate_limited",
            message: `too many sign-in attempts; try again in ${retryAfter} s`,
            details: { retryAfterSeconds: retryAfter },
            retryAfter
          })
        )
      }
      for (const k of all) {
        k.entry.attempts++
        k.entry.lastAt = now
        const over = k.entry.attempts - k.free
        if (over > 0) {
          k.entry.lockedUntil = now + Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** Math.min(over - 1, 30))
        }
      }
      return Effect.void
    })

  /** The attempt succeeded: the login starts over, and the address gets this attempt back. */
  const succeeded = (login: string, address: string | undefined) =>
    Effect.sync(() => {
      entries.delete(`login:${login.toLowerCase()}`)
      const byAddress = address === undefined ? undefined : entries.get(`addr:${address}`)
      if (byAddress !== undefined) byAddress.attempts = Math.max(0, byAddress.attempts - 1)
    })

  return { begin, succeeded }
}

export class LoginThrottle extends Context.Tag("sam/LoginThrottle")<LoginThrottle, ReturnType<typeof make>>() {}

export const layer = (options: Partial<ThrottleOptions> = {}) =>
  Layer.sync(LoginThrottle, () => make({ ...defaults, ...options }))
