import { HttpRouter, HttpServerRequest, HttpServerResponse, Socket } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Api } from "@sam/bus"
import { Effect } from "effect"
import { Auth } from "../Auth.js"
import { defectResponse, errorResponse } from "../Route.js"
import { byCookie, requireOwnOrigin } from "../SameOrigin.js"
import * as Connection from "./Connection.js"
import { Feed } from "./Feed.js"
import * as Upgrade from "./Upgrade.js"

export const PATH = `${Api.PREFIX}/feed`

/**
 * True for a request that carries a token in its URL (`?access_token=`): the gateway must not
 * trace or log its URL.
 */
export const tokenInUrl = (request: HttpServerRequest.HttpServerRequest) => request.url.includes("access_token=")

const tokenOf = (request: HttpServerRequest.HttpServerRequest) =>
  new URL(request.url, "http://gateway").searchParams.get("access_token") ?? undefined

/** Open the socket only to close it at once with `code`; give the client `graceMs` to read the close. */
const refuse = (socket: Socket.Socket, code: number, reason: string, graceMs: number) =>
  Effect.gen(function* () {
    const write = yield* socket.writer
    yield* socket.runRaw(() => {}, { onOpen: Effect.ignore(write(new Socket.CloseEvent(code, reason))) })
  }).pipe(Effect.scoped, Effect.timeout(graceMs), Effect.ignore)

/**
 * `GET /api/v1/feed`: authenticate (bearer header, session cookie from the gateway's own pages, or
 * `?access_token=` since a browser cannot set headers on a WebSocket), then upgrade and run the connection
 * until it closes. A refused caller gets the usual JSON error and no socket.
 */
const handler = Effect.gen(function* () {
  const request = yield* HttpServerRequest.HttpServerRequest
  const auth = yield* Auth
  const token = tokenOf(request)
  const principal = yield* token === undefined ? auth.authenticate(request) : auth.verify(token)
  // the feed carries transcripts: another origin's page must not open it with the user's cookie
  if (token === undefined && byCookie(request)) yield* requireOwnOrigin(request)
  if (!Upgrade.isUpgrade(request)) {
    return HttpServerResponse.unsafeJson(
      {
        code: "invalid_state",
        message: "the feed is a WebSocket: send `Upgrade: websocket` and `Connection: Upgrade`"
      },
      { status: 426, headers: { upgrade: "websocket" } }
    )
  }
  const feed = yield* Feed
  // Refused with a close code rather than an HTTP status: a browser cannot read a failed upgrade's status. A slot
  // counted is given back however the request ends (a failed upgrade, a defect, an interruption).
  const admitted = yield* Effect.acquireRelease(
    Effect.sync(() => feed.admit(principal.userId)),
    (counted) => Effect.sync(() => counted && feed.leave(principal.userId))
  )
  const { socket, webSocket } = yield* Upgrade.upgrade(request, feed.options.closeGraceMs)
  if (!admitted) {
    yield* refuse(
      socket,
      Api.FeedClose.tooManyConnections,
      `too many feed connections: at most ${feed.options.maxConnectionsPerUser} per user`,
      feed.options.closeGraceMs
    )
    return HttpServerResponse.empty()
  }
  const tcp = NodeHttpServerRequest.toIncomingMessage(request).socket
  yield* Effect.scoped(Connection.run(principal, socket, webSocket, tcp))
  return HttpServerResponse.empty()
}).pipe(
  Effect.scoped,
  Effect.catchTag("ApiError", (error) => Effect.succeed(errorResponse(error))),
  // as every route: a request that died is logged with its cause (before, the feed's was a bare 500, unexplained)
  Effect.catchAllDefect((defect) => defectResponse(`GET ${PATH}`, defect)),
  Effect.withSpan("GET /api/v1/feed")
)

export const router = HttpRouter.empty.pipe(HttpRouter.get(PATH, handler))
