import type * as Http from "node:http"
import type * as Net from "node:net"
import { WebSocketServer } from "ws"

const limits = new WeakMap<Net.Server, number>()
let installed = false

/**
 * Make WebSocket upgrades on `server` refuse any message over `maxPayload` bytes while reading its
 * header (close 1009), instead of buffering up to `ws`'s default of 100 MiB first.
 *
 * `@effect/platform-node` creates its `WebSocketServer` internally without options, so the limit
 * is set on that server when it handles an upgrade of a connection accepted by `server`
 * (`socket.server`): other WebSocket servers in the process keep their own settings.
 */
export const limitFrames = (server: Http.Server, maxPayload: number) => {
  limits.set(server, maxPayload)
  if (installed) return
  installed = true
  const handleUpgrade = WebSocketServer.prototype.handleUpgrade
  WebSocketServer.prototype.handleUpgrade = function (this: WebSocketServer, request, socket, head, callback) {
    const limit = limits.get((socket as Net.Socket & { readonly server?: Net.Server }).server as Net.Server)
    if (limit !== undefined) this.options.maxPayload = limit
    return handleUpgrade.call(this, request, socket, head, callback)
  }
}
