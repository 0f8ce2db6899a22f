import { Context } from "effect"

/**
 * In-memory limits on the gateway's unauthenticated boot routes (ADR 0027): refused bootstrap
 * exchanges per client address (a token is 256 random bits, so this bounds load and noise, not
 * guessing), and requests per address to the artifact and scripts. Keys are forgotten after their
 * window; the map is capped so made-up addresses cannot grow it without end.
 */
export class WindowLimiter {
  readonly #hits = new Map<string, { count: number; since: number }>()
  constructor(
    readonly limit: number,
    readonly windowMs: number,
    readonly maxKeys = 50_000
  ) {}

  /** seconds to wait when `key` is over its limit, else undefined */
  blocked(key: string, now = Date.now()): number | undefined {
    const hit = this.#hits.get(key)
    if (hit === undefined || now - hit.since >= this.windowMs) return undefined
    return hit.count >= this.limit ? Math.max(1, Math.ceil((hit.since + this.windowMs - now) / 1000)) : undefined
  }

  count(key: string, now = Date.now()) {
    const hit = this.#hits.get(key)
    if (hit === undefined || now - hit.since >= this.windowMs) {
      if (hit === undefined && this.#hits.size >= this.maxKeys) {
        for (const [old, value] of this.#hits) if (now - value.since >= this.windowMs) this.#hits.delete(old)
        if (this.#hits.size >= this.maxKeys) this.#hits.delete(this.#hits.keys().next().value as string)
      }
      this.#hits.set(key, { count: 1, since: now })
    } else hit.count += 1
  }
}

/**
 * The boot routes' limits, one set per gateway (as its login throttle): refused exchanges, 10 per address per
 * 5 minutes and 300 in all per minute; artifact and script downloads, 120 per address per minute (behind a
 * reverse proxy every node shares its address; the boot script retries a 429 after its Retry-After); live
 * boot-log posts, 60 per node (one bootstrap token each) per minute.
 */
export const make = () => ({
  refusedPerAddress: new WindowLimiter(Number(process.env.SAM_BOOT_REFUSALS_PER_ADDRESS ?? 10), 5 * 60_000),
  refusedTotal: new WindowLimiter(300, 60_000),
  downloads: new WindowLimiter(120, 60_000),
  logAppends: new WindowLimiter(Number(process.env.SAM_NODE_BOOT_LOG_POSTS_PER_MINUTE ?? 60), 60_000)
})

export class BootLimits extends Context.Tag("sam/BootLimits")<BootLimits, ReturnType<typeof make>>() {}
