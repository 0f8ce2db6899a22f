import * as Net from "node:net"
import { layer } from "@effect/vitest"
import { Gateway } from "@sam/gateway"
import { Effect, Exit, Option, Scope } from "effect"
import { expect } from "vitest"
import { rawWebSocket } from "../../security/SecurityKit.js"
import { waitUntil } from "../../src/Env.js"
import { GatewayEnv, makeUser } from "../../src/index.js"

/** A TCP connection to `url` that has written `bytes`; `closed()` once the server has let it go. */
const connection = (url: string, bytes: string) =>
  new Promise<{ readonly closed: () => boolean }>((resolve, reject) => {
    const { hostname, port } = new URL(url)
    const socket = Net.connect(Number(port), hostname)
    let closed = false
    socket.on("close", () => {
      closed = true
    })
    socket.on("error", () => {})
    socket.resume()
    socket.once("connect", () => {
      socket.write(bytes)
      resolve({ closed: () => closed })
    })
    socket.once("error", reject)
  })

/**
 * A gateway of its own with one client that holds a connection open as `hold` makes it; the gateway's
 * scope closes, and must be closed within a few seconds with that connection let go (the web test stack
 * waited on such a connection until its 45 s limit).
 */
const stopsWithin = <E, R>(hold: (url: string) => Effect.Effect<{ readonly closed: () => boolean }, E, R>) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const { url } = yield* Gateway.start({ host: "127.0.0.1", port: 0 }).pipe(Scope.extend(scope))
    const client = yield* hold(url)
    yield* Effect.sleep("200 millis")
    const started = Date.now()
    const closed = yield* Scope.close(scope, Exit.void).pipe(Effect.timeout("15 seconds"), Effect.option)
    const ms = Date.now() - started
    console.log(`gateway stopped after ${ms} ms`)
    expect(Option.isSome(closed)).toBe(true)
    expect(ms).toBeLessThan(5_000)
    // the server has let it go: the client sees its end soon after (on a loaded machine, not within a fixed wait)
    yield* waitUntil(
      "the client's connection closed",
      Effect.sync(() => (client.closed() ? true : undefined)),
      { timeout: "5 seconds" }
    )
  })

const hostOf = (url: string) => new URL(url).host

layer(GatewayEnv, { excludeTestServices: true, timeout: 120_000 })("gateway: shutdown", (it) => {
  it.effect("stops within seconds while a client has sent half a request", () =>
    stopsWithin((url) => Effect.promise(() => connection(url, `GET /api/v1/me HTTP/1.1\r\nHost: ${hostOf(url)}\r\n`)))
  )

  it.effect("stops within seconds while a client keeps an idle keep-alive connection", () =>
    stopsWithin((url) =>
      Effect.promise(() =>
        connection(url, `GET /api/v1/me HTTP/1.1\r\nHost: ${hostOf(url)}\r\nConnection: keep-alive\r\n\r\n`)
      )
    )
  )

  it.effect("stops within seconds while a feed client never answers the close frame", () =>
    stopsWithin((url) =>
      Effect.gen(function* () {
        const alice = yield* makeUser("Alice")
        const feed = yield* Effect.promise(() => rawWebSocket(url, alice.token))
        return { closed: feed.ended }
      })
    )
  )
})
