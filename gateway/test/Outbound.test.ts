import * as Http from "node:http"
import type * as Net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Api } from "@sam/bus"
import { Effect } from "effect"
import { WebSocket, WebSocketServer } from "ws"
import { defaults, type FeedOptions } from "../src/feed/FeedConfig.js"
import * as Outbound from "../src/feed/Outbound.js"

/** A real WebSocket over loopback: the server's end is the connection's `Outbound`; the client reads, or is paused. */
const connection = (options: Partial<FeedOptions>, opened = true) =>
  Effect.gen(function* () {
    const ends = yield* Effect.acquireRelease(
      Effect.promise(async () => {
        const http = Http.createServer()
        const wss = new WebSocketServer({ server: http })
        await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve))
        const address = http.address()
        const port = typeof address === "object" && address !== null ? address.port : 0
        const accepted = new Promise<{ ws: WebSocket; tcp: Net.Socket }>((resolve) =>
          wss.once("connection", (ws, request) => resolve({ ws, tcp: request.socket }))
        )
        const client = new WebSocket(`ws://127.0.0.1:${port}`)
        const received: Array<string> = []
        client.on("message", (data) => received.push(String(data)))
        const closed = new Promise<{ code: number; reason: string }>((resolve) =>
          client.on("close", (code, reason) => resolve({ code, reason: reason.toString() }))
        )
        await new Promise((resolve) => client.once("open", resolve))
        return { http, wss, client, received, closed, ...(await accepted) }
      }),
      (ends) =>
        Effect.promise(async () => {
          ends.client.terminate()
          ends.ws.terminate()
          ends.wss.close()
          await new Promise((resolve) => ends.http.close(resolve))
        })
    )
    const out = yield* Outbound.make(ends.tcp, { ...defaults, closeGraceMs: 100, ...options })
    if (opened) out.open(ends.ws)
    return { ...ends, out }
  })

const frameOf = (n: number, bytes: number) =>
  Outbound.frame({ type: "error", code: "bad_frame", message: `${n} `.padEnd(bytes, "x") })

const waitFor = <A>(check: () => A | undefined) =>
  Effect.gen(function* () {
    const deadline = Date.now() + 20_000
    for (;;) {
      const value = check()
      if (value !== undefined) return value
      if (Date.now() > deadline) return yield* Effect.die(new Error("timed out"))
      yield* Effect.sleep("5 millis")
    }
  })

const KiB = 1024

describe("feed: a connection's live backlog", () => {
  it.scopedLive("a burst bigger than the bound, to a client that reads, is delivered whole, burst after burst", () =>
    Effect.gen(function* () {
      const c = yield* connection({ maxBufferedBytes: 256 * KiB, slowAfterMs: 2_000 })
      // 12 frames of 60 KB in one step (720 KB, under four times the bound): a few batches of a session's events
      for (let burst = 0; burst < 5; burst++) {
        for (let i = 0; i < 12; i++) expect(c.out.send(frameOf(burst * 12 + i, 60 * KiB))).toBe(true)
        yield* waitFor(() => (c.received.length === (burst + 1) * 12 ? true : undefined))
      }
      expect(c.out.isClosing()).toBe(false)
      expect(c.received.map((json) => Number.parseInt((JSON.parse(json) as { message: string }).message, 10))).toEqual(
        Array.from({ length: 60 }, (_, i) => i)
      )
    })
  )

  it.scopedLive("a client that stays over the bound for slowAfterMs is closed as too slow, and told how long", () =>
    Effect.gen(function* () {
      const c = yield* connection({ maxBufferedBytes: 256 * KiB, slowAfterMs: 300 })
      c.client.pause()
      // fill the kernel's buffers until the backlog is over the bound, then keep it there with small frames
      // (the connection counts from the send that first found it over: after `filling`, at or before `over`)
      const filling = Date.now()
      let n = 0
      while (c.out.backlog() <= 256 * KiB) {
        expect(c.out.send(frameOf(n++, 64 * KiB))).toBe(true)
        yield* Effect.sleep("2 millis")
      }
      const over = Date.now()
      while (c.out.send(frameOf(n++, KiB))) yield* Effect.sleep("10 millis")
      expect(Date.now() - filling).toBeGreaterThanOrEqual(300)
      expect(Date.now() - over).toBeLessThan(2_000)
      c.client.resume()
      const closed = yield* Effect.promise(() => c.closed)
      expect(closed.code).toBe(Api.FeedClose.tooSlow)
      const told = /^too slow: \d+ bytes buffered for (\d+) ms$/.exec(closed.reason)
      expect(Number(told?.[1])).toBeGreaterThanOrEqual(300)
    })
  )

  it.scopedLive("a backlog past four times the bound closes the client at once", () =>
    Effect.gen(function* () {
      const c = yield* connection({ maxBufferedBytes: 256 * KiB, slowAfterMs: 60_000 })
      c.client.pause()
      let sent = 0
      while (c.out.send(frameOf(sent, 64 * KiB))) sent++
      // all in one step: nothing reached the socket yet, so the queue alone passed 1 MiB
      expect(sent).toBe(Math.floor((4 * 256 * KiB) / frameOf(0, 64 * KiB).bytes))
      c.client.resume()
      const closed = yield* Effect.promise(() => c.closed)
      expect(closed.code).toBe(Api.FeedClose.tooSlow)
      expect(closed.reason).toMatch(/^too slow: \d+ bytes buffered$/)
      expect(Number(/\d+/.exec(closed.reason)?.[0])).toBeGreaterThan(4 * 256 * KiB)
    })
  )

  it.scopedLive(
    "what is sent before the handshake is done goes out once it is, in order; a close asked meanwhile goes instead",
    () =>
      Effect.gen(function* () {
        const c = yield* connection({}, false)
        for (let i = 0; i < 3; i++) expect(c.out.send(frameOf(i, 100))).toBe(true)
        // nothing is written before `open`
        yield* Effect.sleep("50 millis")
        expect(c.received).toEqual([])
        c.out.open(c.ws)
        yield* waitFor(() => (c.received.length === 3 ? true : undefined))
        expect(
          c.received.map((json) => Number.parseInt((JSON.parse(json) as { message: string }).message, 10))
        ).toEqual([0, 1, 2])

        const d = yield* connection({}, false)
        expect(d.out.send(frameOf(0, 100))).toBe(true)
        d.out.close(Api.FeedClose.unauthenticated, "revoked")
        expect(d.out.send(frameOf(1, 100))).toBe(false)
        d.out.open(d.ws)
        const closed = yield* Effect.promise(() => d.closed)
        expect(closed).toEqual({ code: Api.FeedClose.unauthenticated, reason: "revoked" })
        expect(d.received).toEqual([])
      })
  )

  it.scopedLive("a close whose reason is longer than a close frame holds goes out with the reason cut", () =>
    Effect.gen(function* () {
      const c = yield* connection({})
      // a revocation's reason may be up to 200 characters; a close frame's reason holds 123 bytes
      c.out.close(Api.FeedClose.unauthenticated, `revoked: ${"é".repeat(100)}`)
      const closed = yield* Effect.promise(() => c.closed)
      expect(closed.code).toBe(Api.FeedClose.unauthenticated)
      expect(closed.reason.startsWith("revoked: éé")).toBe(true)
      expect(closed.reason.endsWith("…")).toBe(true)
      expect(Buffer.byteLength(closed.reason)).toBeLessThanOrEqual(123)
    })
  )

  it("closeReason keeps a reason that fits, and cuts a longer one between two characters", () => {
    expect(Outbound.closeReason("revoked")).toBe("revoked")
    const fits = "x".repeat(123)
    expect(Outbound.closeReason(fits)).toBe(fits)
    // 🔑 is four bytes of UTF-8 and two UTF-16 units: cut by units, it would leave half a character
    for (const reason of [`${"x".repeat(117)}🔑🔑`, `${"x".repeat(120)}🔑🔑`, "🔑".repeat(50)]) {
      const cut = Outbound.closeReason(reason)
      expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(123)
      expect(cut.endsWith("…")).toBe(true)
      expect(reason.startsWith(cut.slice(0, -1))).toBe(true)
      // no half character: a lone surrogate would come back from UTF-8 as U+FFFD
      expect(Buffer.from(cut).toString()).toBe(cut)
    }
  })
})
