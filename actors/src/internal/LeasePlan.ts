import { z } from "zod"

/**
 * Pure shard-lease decisions: which shards to give up and which to take on a tick. Kept apart from
 * the KV and Postgres calls so they are unit-tested without servers.
 */
export const LeaseValue = z.object({
  /** the holding instance; "" once released */
  owner: z.string(),
  /** fencing epoch, raised by every acquisition; Postgres refuses commits with an older one */
  epoch: z.number().int().nonnegative(),
  /** epoch milliseconds after which anyone may take the shard */
  expiresAt: z.number()
})
export type LeaseValue = z.infer<typeof LeaseValue>

export const MemberValue = z.object({ instance: z.string(), expiresAt: z.number() })
export type MemberValue = z.infer<typeof MemberValue>

export const leaseKey = (kind: string, shard: number) => `lease.${kind}.${shard}`
export const memberKey = (kind: string, instance: string) => `member.${kind}.${instance}`
export const memberPrefix = (kind: string) => `member.${kind}.>`
export const leasePrefix = "lease.>"

/** KV keys allow `[-/_=.A-Za-z0-9]`; an instance id is one token of them. */
export const sanitizeInstance = (value: string) => value.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 100)

/** Each live instance should hold about this many shards. */
export const target = (shards: number, liveMembers: number) => Math.ceil(shards / Math.max(1, liveMembers))

export const isFree = (lease: LeaseValue | undefined, now: number) =>
  lease === undefined || lease.owner === "" || lease.expiresAt <= now

const hash = (value: string) => {
  let h = 0x811c9dc5
  for (let i = 0; i < value.length; i++) h = Math.imul(h ^ value.charCodeAt(i), 0x01000193) >>> 0
  return h
}

export interface PlanInput {
  readonly shards: number
  readonly me: string
  readonly owned: ReadonlyArray<number>
  /** the current lease of every shard (undefined when never taken) */
  readonly leases: ReadonlyMap<number, LeaseValue | undefined>
  readonly liveMembers: number
  readonly now: number
}

/**
 * Give up shards beyond the target (highest first), or take free ones up to it. Instances start their
 * search at different shards (by a hash of their id) so that two of them rarely race for the same one.
 */
export const plan = (
  input: PlanInput
): { readonly release: ReadonlyArray<number>; readonly acquire: ReadonlyArray<number> } => {
  const goal = target(input.shards, input.liveMembers)
  if (input.owned.length > goal) {
    return { release: [...input.owned].sort((a, b) => b - a).slice(0, input.owned.length - goal), acquire: [] }
  }
  if (input.owned.length === goal) return { release: [], acquire: [] }
  const start = hash(input.me) % input.shards
  const acquire: Array<number> = []
  for (let i = 0; i < input.shards && acquire.length < goal - input.owned.length; i++) {
    const shard = (start + i) % input.shards
    if (input.owned.includes(shard)) continue
    if (isFree(input.leases.get(shard), input.now)) acquire.push(shard)
  }
  return { release: [], acquire }
}
