import { describe, expect, it } from "@effect/vitest"
import { LeasePlan } from "../src/index.js"

const lease = (owner: string, expiresAt: number, epoch = 1) => ({ owner, epoch, expiresAt })
const leases = (entries: ReadonlyArray<[number, LeasePlan.LeaseValue | undefined]>) => new Map(entries)

describe("shard lease planning", () => {
  it("a lone instance takes every free shard", () => {
    const decision = LeasePlan.plan({
      shards: 4,
      me: "a",
      owned: [],
      leases: leases([]),
      liveMembers: 1,
      now: 1_000
    })
    expect([...decision.acquire].sort()).toEqual([0, 1, 2, 3])
    expect(decision.release).toEqual([])
  })

  it("a second instance joining makes the first give up the shards beyond its share, highest first", () => {
    const decision = LeasePlan.plan({
      shards: 8,
      me: "a",
      owned: [0, 1, 2, 3, 4, 5, 6, 7],
      leases: leases([]),
      liveMembers: 2,
      now: 1_000
    })
    expect(decision.release).toEqual([7, 6, 5, 4])
    expect(decision.acquire).toEqual([])
  })

  it("takes only free, released or expired shards, up to ceil(shards / instances)", () => {
    const decision = LeasePlan.plan({
      shards: 5,
      me: "b",
      owned: [],
      leases: leases([
        [0, lease("a", 2_000)],
        [1, lease("a", 500)],
        [2, lease("", 0)],
        [3, lease("a", 2_000)],
        [4, undefined]
      ]),
      liveMembers: 2,
      now: 1_000
    })
    expect([...decision.acquire].sort()).toEqual([1, 2, 4])
  })

  it("keeps what it holds when at its share", () => {
    const decision = LeasePlan.plan({
      shards: 4,
      me: "a",
      owned: [0, 1],
      leases: leases([[2, undefined]]),
      liveMembers: 2,
      now: 0
    })
    expect(decision).toEqual({ release: [], acquire: [] })
  })

  it("instance ids become KV-safe key tokens", () => {
    expect(LeasePlan.sanitizeInstance("host.local-12:ab")).toBe("host_local-12_ab")
    expect(LeasePlan.target(16, 3)).toBe(6)
    expect(LeasePlan.target(16, 0)).toBe(16)
  })
})
