import type * as Http from "node:http"
import type * as Net from "node:net"
import { type HttpServerRequest, Socket } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Api } from "@sam/bus"
import { Effect } from "effect"
import { type WebSocket, WebSocketServer } from "ws"

/** What each upgrade request brought after its headers (its first bytes of WebSocket frames, if it sent any early). */
const heads = new WeakMap<Http.IncomingMessage, Buffer>()

/**
 * Watch `server`'s upgrade requests before anything handles them. Node takes its own error listener off a socket
 * when it emits `upgrade`, and `ws` adds one only once the handshake is done: a client that reset its connection
 * meanwhile (while the feed checked its credential) raised an `error` nobody listened to, which ends the process.
 * The request's `head` is kept for `upgrade` below.
 */
export const guardUpgrades = (server: Http.Server) => {
  const emit = server.emit.bind(server) as (event: string, ...args: Array<unknown>) => boolean
  server.emit = ((event: string, ...args: Array<unknown>) => {
    if (event === "upgrade") {
      const [request, socket, head] = args as [Http.IncomingMessage, Net.Socket, Buffer]
      // an error still ends the socket (Node destroys it, then `close`); it only stops being uncaught
      socket.on("error", () => {})
      heads.set(request, head)
    }
    return emit(event, ...args)
  }) as typeof server.emit
}

/** How long a closing feed socket is given for its client's close frame before it is cut. */
const CLOSE_GRACE_MS = 2_000

/**
 * Whether Node took the request for an upgrade (`Upgrade` and `Connection: Upgrade` both; `guardUpgrades` saw its
 * `upgrade` event): only then is its socket the application's. One with `Upgrade: websocket` alone is an ordinary
 * request, its socket still read by Node's HTTP parser: a handshake on it would answer 101 and then have the
 * client's frames parsed as HTTP.
 */
export const isUpgrade = (request: HttpServerRequest.HttpServerRequest) =>
  request.headers.upgrade?.toLowerCase() === "websocket" && heads.has(NodeHttpServerRequest.toIncomingMessage(request))

/**
 * The one `ws` server of the feed's handshakes: a client's message is refused (close 1009) as soon as its header says
 * it is over the limit, instead of being buffered up to `ws`'s default of 100 MiB first.
 */
const handshakes = new WebSocketServer({
  noServer: true,
  clientTracking: false,
  maxPayload: Api.MAX_CLIENT_FRAME_BYTES
})

export interface Upgraded {
  readonly socket: Socket.Socket
  /** its `ws` socket once the socket's `runRaw` made the handshake; undefined before */
  readonly webSocket: () => WebSocket | undefined
}

/**
 * The feed request's WebSocket, the handshake made here rather than by `request.upgrade` of
 * `@effect/platform-node`: that one waits for `ws` uninterruptibly, and `ws` never answers a handshake it refuses (a
 * bad `Sec-WebSocket-Key`, a client that left while its credential was checked, a server stopping), so the request's
 * fiber never ended and a stopping gateway waited for it for ever. Here a refused handshake ends once `ws` has closed
 * the connection, or after `refusedWithinMs` when its client does not read the refusal (`ws` closes a refused
 * connection only once its answer is sent), and a socket that is gone is not handed to `ws` at all. Closing the
 * scope closes the WebSocket and waits (at most `CLOSE_GRACE_MS`) until its connection is gone, so nothing is
 * written on it afterwards.
 */
export const upgrade = (
  request: HttpServerRequest.HttpServerRequest,
  refusedWithinMs: number
): Effect.Effect<Upgraded> => {
  const incoming = NodeHttpServerRequest.toIncomingMessage(request)
  const tcp = incoming.socket
  const refused = (cause: string) => new Socket.SocketGenericError({ reason: "Open", cause })
  let opened: WebSocket | undefined
  const socket = Socket.fromWebSocket(
    Effect.acquireRelease(
      Effect.async<globalThis.WebSocket, Socket.SocketError>((resume) => {
        if (tcp.destroyed || !tcp.readable || !tcp.writable) {
          tcp.destroy()
          return resume(Effect.fail(refused("the client left before the upgrade")))
        }
        // every way `ws` refuses a handshake ends the connection: its `close` answers for the callback that never comes
        const gone = () => {
          clearTimeout(unread)
          resume(Effect.fail(refused("the WebSocket handshake was refused or the client left")))
        }
        tcp.once("close", gone)
        // a refusal waits to be sent before `ws` ends the connection: a client that reads nothing is cut
        const unread = setTimeout(() => tcp.destroy(), refusedWithinMs)
        handshakes.handleUpgrade(incoming, tcp, heads.get(incoming) ?? Buffer.alloc(0), (ws) => {
          clearTimeout(unread)
          tcp.off("close", gone)
          opened = ws
          resume(Effect.succeed(ws as unknown as globalThis.WebSocket))
        })
      }),
      (ws) =>
        Effect.async<void>((resume) => {
          if (tcp.destroyed) return resume(Effect.void)
          const cut = setTimeout(() => tcp.destroy(), CLOSE_GRACE_MS)
          tcp.once("close", () => {
            clearTimeout(cut)
            resume(Effect.void)
          })
          // a close the connection already sent (or received) is not sent again
          ws.close(Api.FeedClose.goingAway, "the gateway is stopping")
        })
    )
  )
  return Effect.map(socket, (socket) => ({ socket, webSocket: () => opened }))
}
