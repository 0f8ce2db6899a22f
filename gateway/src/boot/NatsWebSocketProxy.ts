import type * as Http from "node:http"
import * as Net from "node:net"

/** Where remote nodes reach NATS over WebSocket on the gateway's own port (ADR 0027). */
export const NATS_PATH = "/nats"

const MAX_HEADER_BYTES = 16 * 1024

/**
 * WebSocket upgrades of `NATS_PATH` on `server` are passed through, byte for byte, to nats-server's
 * WebSocket listener on loopback (`upstream`, `127.0.0.1:<port>`); every other upgrade (the feed) goes
 * where it went. The gateway adds nothing and reads nothing of the NATS traffic: nats-server
 * authenticates the node's credentials itself. So a remote node needs only the gateway's public
 * address (its TLS, from a front such as Caddy, protects the connection) and no NATS port is exposed.
 */
export const proxyNatsWebSocket = (server: Http.Server, upstream: string) => {
  const [host, port] = [
    upstream.slice(0, upstream.lastIndexOf(":")),
    Number(upstream.slice(upstream.lastIndexOf(":") + 1))
  ]
  const emit = server.emit.bind(server) as (event: string, ...args: Array<unknown>) => boolean
  server.emit = ((event: string, ...args: Array<unknown>) => {
    if (event !== "upgrade") return emit(event, ...args)
    const [request, socket, head] = args as [Http.IncomingMessage, Net.Socket, Buffer]
    const path = (request.url ?? "").split("?")[0]
    if (path !== NATS_PATH) return emit(event, ...args)
    const lines = [`GET / HTTP/1.1`]
    let bytes = 0
    for (let i = 0; i < request.rawHeaders.length; i += 2) {
      const line = `${request.rawHeaders[i]}: ${request.rawHeaders[i + 1]}`
      bytes += line.length
      lines.push(line)
    }
    if (bytes > MAX_HEADER_BYTES || request.method !== "GET") {
      socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
      return true
    }
    const target = Net.connect({ host, port })
    const close = () => {
      socket.destroy()
      target.destroy()
    }
    target.once("connect", () => {
      target.write(`${lines.join("\r\n")}\r\n\r\n`)
      if (head.length > 0) target.write(head)
      socket.pipe(target).pipe(socket)
    })
    target.once("error", () => {
      if (socket.writable && target.bytesRead === 0) socket.end("HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n")
      close()
    })
    socket.once("error", close)
    socket.once("close", close)
    target.once("close", close)
    return true
  }) as typeof server.emit
}

/** The NATS URL a remote node is told: the gateway's public URL over WebSocket at `NATS_PATH`. */
export const nodeNatsUrl = (publicUrl: string) =>
  `${publicUrl.replace(/^http(s?):\/\//, "ws$1://").replace(/\/+$/, "")}${NATS_PATH}`
