import type * as Net from "node:net"
import type { Socket } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Api, makeId } from "@sam/bus"
import { Effect, Queue } from "effect"
import { issues } from "../ApiError.js"
import { Auth, type Principal } from "../Auth.js"
import type { Subscriber } from "./Fanout.js"
import { Feed } from "./Feed.js"
import * as Outbound from "./Outbound.js"
import * as Subscriptions from "./Subscriptions.js"

type Request = Api.ClientFrame & { readonly type: "subscribe" | "unsubscribe" }

/**
 * One feed connection, from the upgrade until the socket closes: `hello`, the client's frames
 * (subscriptions handled one at a time, in the order sent), the heartbeat, and the periodic check
 * that the credential it was opened with still holds. Nothing a client sends can fail the gateway:
 * a bad frame is answered, and only repeated abuse or a protocol violation closes the connection.
 */
export const run = Effect.fn("Feed.connection")(function* (
  principal: Principal,
  socket: Socket.Socket,
  webSocket: () => Outbound.FrameSink | undefined,
  tcp: Net.Socket | undefined
) {
  const feed = yield* Feed
  const auth = yield* Auth
  const sql = yield* SqlClient.SqlClient
  const { options, fanout } = feed
  const scope = yield* Effect.scope
  const out = yield* Outbound.make(tcp, options)
  const rechecks = yield* Queue.sliding<void>(1)
  const self: Subscriber = {
    id: makeId("conn"),
    userId: principal.userId,
    credentialId: principal.credentialId,
    out,
    recheck: () => rechecks.unsafeOffer(undefined)
  }
  const subscriptions = yield* Subscriptions.make(principal, self, feed, scope)
  yield* Effect.acquireRelease(
    Effect.sync(() => fanout.register(self)),
    () =>
      Effect.sync(() => {
        fanout.unregister(self)
        subscriptions.release()
      })
  )

  const requests = yield* Queue.unbounded<Request>()
  let lastHeard = Date.now()
  let badFrames = 0
  const reply = (value: Api.ServerFrame) => out.send(Outbound.frame(value))

  const bad = (message: string, details?: unknown) => {
    if (++badFrames > Api.MAX_BAD_FRAMES) {
      out.close(Api.FeedClose.policyViolation, `more than ${Api.MAX_BAD_FRAMES} bad frames`)
      return
    }
    reply({ type: "error", code: "bad_frame", message, ...(details === undefined ? {} : { details }) })
  }

  const onFrame = (data: string | Uint8Array) => {
    lastHeard = Date.now()
    if (out.isClosing()) return
    if (typeof data !== "string") return out.close(Api.FeedClose.unsupportedData, "binary frames are not supported")
    if (data.length > Api.MAX_CLIENT_FRAME_BYTES || Buffer.byteLength(data) > Api.MAX_CLIENT_FRAME_BYTES) {
      return out.close(Api.FeedClose.messageTooBig, `frames are limited to ${Api.MAX_CLIENT_FRAME_BYTES} bytes`)
    }
    let json: unknown
    try {
      json = JSON.parse(data)
    } catch {
      return bad("the frame is not JSON")
    }
    const parsed = Api.ClientFrame.safeParse(json)
    if (!parsed.success) return bad("not a valid frame (subscribe, unsubscribe, ping or pong)", issues(parsed.error))
    const request = parsed.data
    if (request.type === "ping") reply({ type: "pong" })
    else if (request.type === "subscribe" || request.type === "unsubscribe") requests.unsafeOffer(request)
  }

  yield* Effect.forkScoped(
    Effect.forever(
      Effect.gen(function* () {
        const request = yield* Queue.take(requests)
        yield* (
          request.type === "subscribe" ? subscriptions.subscribe(request) : subscriptions.unsubscribe(request)
        ).pipe(
          Effect.catchAllCause((cause) =>
            Effect.logError("feed: a subscription request failed", cause).pipe(
              Effect.andThen(() =>
                reply({
                  type: "error",
                  code: "internal",
                  message: "the gateway failed to handle this request; try again",
                  ...(request.id === undefined ? {} : { id: request.id })
                })
              )
            )
          )
        )
      })
    )
  )

  yield* Effect.forkScoped(
    Effect.forever(
      Effect.sleep(options.heartbeatMs).pipe(
        Effect.andThen(() => {
          if (Date.now() - lastHeard >= 2 * options.heartbeatMs) out.close(Api.FeedClose.noPong, "no pong")
          else reply({ type: "ping" })
        })
      )
    )
  )

  const credentialActive =
    principal.via === "token"
      ? auth.tokenActive(principal.userId, principal.credentialId)
      : sql<{ one: number }>`
          SELECT 1 AS one FROM user_sessions
          WHERE id = ${principal.credentialId} AND revoked_at IS NULL AND expires_at > now()`.pipe(
          Effect.orDie,
          Effect.map((rows) => rows.length > 0)
        )
  yield* Effect.forkScoped(
    Effect.forever(
      Effect.gen(function* () {
        // every `recheckMs`, and at once when the fanout sees this user removed from a project
        yield* Queue.take(rechecks).pipe(Effect.timeout(options.recheckMs), Effect.ignore)
        if (!(yield* credentialActive)) {
          return out.close(Api.FeedClose.unauthenticated, "the credential was revoked or has expired")
        }
        yield* subscriptions.recheck()
      })
    ).pipe(Effect.catchAllCause((cause) => Effect.logWarning("feed: recheck stopped", cause)))
  )

  reply({ type: "hello", connectionId: self.id, userId: principal.userId, heartbeatMs: options.heartbeatMs })
  // what was queued before the handshake (the hello) goes out once it is done
  const opened = Effect.sync(() => {
    const ws = webSocket()
    if (ws !== undefined) out.open(ws)
  })
  yield* socket.runRaw(onFrame, { onOpen: opened }).pipe(Effect.ignore)
})
