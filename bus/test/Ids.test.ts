import { describe, expect, it } from "vitest"
import { MessageId, makeId, SessionId } from "../src/index.js"

describe("ids", () => {
  it("are valid for their kind and never repeat, across many draws from the random pool", () => {
    const ids = Array.from({ length: 50_000 }, () => makeId("msg"))
    expect(new Set(ids).size).toBe(ids.length)
    for (const id of ids.slice(0, 500)) expect(MessageId.safeParse(id).success).toBe(true)
    // 20 base32 characters: 100 bits, spread over the alphabet
    const counts = new Map<string, number>()
    for (const id of ids) for (const c of id.slice(4)) counts.set(c, (counts.get(c) ?? 0) + 1)
    expect(counts.size).toBe(32)
    for (const n of counts.values()) expect(n).toBeGreaterThan((50_000 * 20) / 32 / 2)
    expect(SessionId.safeParse(makeId("msg")).success).toBe(false)
  })
})
