import { Context, Effect, Layer } from "effect"
import * as CatchUp from "./CatchUp.js"
import * as Fanout from "./Fanout.js"
import * as FeedConfig from "./FeedConfig.js"

/** The feed of one gateway process: its limits, its one bus subscription, and the catch-up reader. */
export class Feed extends Context.Tag("sam/Feed")<
  Feed,
  {
    readonly options: FeedConfig.FeedOptions
    readonly fanout: Fanout.Fanout
    readonly catchUp: CatchUp.CatchUp
    /** count one more connection of the user; false (and nothing counted) when at `maxConnectionsPerUser` */
    readonly admit: (userId: string) => boolean
    /** the connection `admit` counted has ended */
    readonly leave: (userId: string) => void
  }
>() {}

/** Needs the bus (`Nats`) and the ledger (`SqlClient`); the subscription ends with the scope. */
export const layer = (options: Partial<FeedConfig.FeedOptions> = {}) =>
  Layer.scoped(
    Feed,
    Effect.gen(function* () {
      const resolved = yield* FeedConfig.resolve(options)
      // Counted from before the upgrade, so many connections opened at once cannot all slip under the cap.
      const open = new Map<string, number>()
      return {
        options: resolved,
        fanout: yield* Fanout.make,
        catchUp: yield* CatchUp.make,
        admit: (userId: string) => {
          const n = open.get(userId) ?? 0
          if (n >= resolved.maxConnectionsPerUser) return false
          open.set(userId, n + 1)
          return true
        },
        leave: (userId: string) => {
          const n = (open.get(userId) ?? 1) - 1
          if (n <= 0) open.delete(userId)
          else open.set(userId, n)
        }
      }
    })
  )
