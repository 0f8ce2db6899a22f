import { describe, expect, it } from "@effect/vitest"
import { Retry } from "../src/index.js"

const base = { fenced: false, attempt: 1, deliveryCount: 1, maxAttempts: 3, retryBaseMs: 100 }

describe("what follows a failed command", () => {
  it("a fenced commit gives the shard up, whatever the count", () => {
    expect(Retry.afterFailure({ ...base, fenced: true, attempt: 9 })).toEqual({ _tag: "GiveUpShard" })
  })

  it("retries in place with exponential backoff, capped", () => {
    expect(Retry.afterFailure(base)).toEqual({ _tag: "Retry", delayMs: 100 })
    expect(Retry.afterFailure({ ...base, attempt: 2 })).toEqual({ _tag: "Retry", delayMs: 200 })
    expect(Retry.afterFailure({ ...base, attempt: 9, maxAttempts: 100 })).toEqual({
      _tag: "Retry",
      delayMs: Retry.MAX_BACKOFF_MS
    })
  })

  it("dead-letters after N attempts, counting the server's earlier deliveries", () => {
    expect(Retry.afterFailure({ ...base, attempt: 3 })).toEqual({ _tag: "DeadLetter" })
    // delivered twice before (a crashed owner): the first attempt here is the third in all
    expect(Retry.afterFailure({ ...base, deliveryCount: 3 })).toEqual({ _tag: "DeadLetter" })
    expect(Retry.totalAttempts(3, 1)).toBe(3)
  })
})
