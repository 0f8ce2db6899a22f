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
  }
>() {}

/** Needs the bus (`Nats`) and the ledger (`SqlClient`); the subscription ends with the scope. */
export const layer = (options: Partial<FeedConfig.FeedOptions> = {}) =>
  Layer.scoped(
    Feed,
    Effect.gen(function* () {
      return {
        options: yield* FeedConfig.resolve(options),
        fanout: yield* Fanout.make,
        catchUp: yield* CatchUp.make
      }
    })
  )
