import type * as Api from "@sam/bus/api"
import { Client, FeedClient, type FeedStatus } from "@sam/gateway/client"
import { Effect, Either } from "effect"

/** The typed API client in the browser: same origin, the session cookie. */
export const api = Client.make({ baseUrl: "" })

/** Runs a call; a failure is data, never thrown. */
export const call = <A>(effect: Effect.Effect<A, Client.ApiClientError>) =>
  Effect.runPromise(Effect.either(effect)).then((result) =>
    Either.isRight(result) ? ({ ok: true, value: result.right } as const) : ({ ok: false, error: result.left } as const)
  )

type FrameListener = (frame: Api.ServerFrame) => void
type StatusListener = (status: FeedStatus) => void

const frames = new Set<FrameListener>()
const statuses = new Set<StatusListener>()
let client: FeedClient | undefined
let status: FeedStatus = { state: "connecting" }

/** The page's one live-feed connection, shared by every component that listens. */
export const feed = (): FeedClient => {
  client ??= new FeedClient({
    baseUrl: "",
    maxBackoffMs: 3000,
    onFrame: (frame) => {
      for (const listener of frames) listener(frame)
    },
    onStatus: (next) => {
      status = next
      for (const listener of statuses) listener(next)
    }
  })
  ;(globalThis as { __samFeed?: FeedClient }).__samFeed = client
  return client
}

export const onFrame = (listener: FrameListener) => {
  feed()
  frames.add(listener)
  return () => frames.delete(listener)
}

export const onStatus = (listener: StatusListener) => {
  feed()
  statuses.add(listener)
  listener(status)
  return () => statuses.delete(listener)
}
