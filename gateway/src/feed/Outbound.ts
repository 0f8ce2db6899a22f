import type * as Net from "node:net"
import { Socket } from "@effect/platform"
import { Api } from "@sam/bus"
import { Deferred, Effect, Queue } from "effect"
import type { FeedOptions } from "./FeedConfig.js"

/** A serialized server frame. One event is serialized once and the same value sent to every connection. */
export interface OutFrame {
  readonly json: string
  readonly bytes: number
}

export const frame = (value: Api.ServerFrame): OutFrame => {
  const json = JSON.stringify(value)
  return { json, bytes: Buffer.byteLength(json) }
}

/** About the most a `session.events` frame holds: a browser pays per message, not per byte (Feed.ts). */
export const EVENTS_FRAME_BYTES = 64 * 1024

/**
 * Entries of one session's transcript (each an `Api.SessionEventEntry` as JSON, consecutive and in seq
 * order) as one frame: a `session.event` for one, a `session.events` for more.
 */
export const eventsFrame = (sessionId: string, entries: ReadonlyArray<string>): OutFrame => {
  const json =
    entries.length === 1
      ? `{"type":"session.event","sessionId":${JSON.stringify(sessionId)},${entries[0]!.slice(1)}`
      : `{"type":"session.events","sessionId":${JSON.stringify(sessionId)},"events":[${entries.join(",")}]}`
  return { json, bytes: Buffer.byteLength(json) }
}

/**
 * The sending side of one connection. `@effect/platform`'s socket write is a synchronous `ws.send`
 * that never pushes back, so the backlog is measured: what sits in the TCP socket's write buffer
 * plus this queue. Live sends close a client whose backlog has stayed over `maxBufferedBytes` for
 * `slowAfterMs`, or passes four times it: one step may hand a client several batches of a session's
 * events at once (each up to 256 KiB), which says nothing of how fast it reads. Catch-up sends wait
 * for the backlog to drain instead, up to `drainTimeoutMs`.
 */
export interface Outbound {
  /** queue a live frame; false when the connection is closing (now, or because of this frame) */
  readonly send: (frame: OutFrame) => boolean
  /** queue a catch-up frame if the backlog is below low water now; false otherwise (closing, or no room) */
  readonly trySend: (frame: OutFrame) => boolean
  /** queue a catch-up frame once the backlog is below low water; false when the connection is closing */
  readonly sendPaced: (frame: OutFrame) => Effect.Effect<boolean>
  /** close with a code and reason; later sends are dropped; the socket is destroyed after the grace */
  readonly close: (code: number, reason: string) => void
  readonly isClosing: () => boolean
  readonly backlog: () => number
  /** completes once a close was asked for */
  readonly closing: Effect.Effect<void>
}

export const make = Effect.fn("Feed.outbound")(function* (
  socket: Socket.Socket,
  tcp: Net.Socket | undefined,
  options: FeedOptions
) {
  const write = yield* socket.writer
  const queue = yield* Effect.acquireRelease(Queue.unbounded<OutFrame | null>(), Queue.shutdown)
  const closingSignal = yield* Deferred.make<void>()
  let queuedBytes = 0
  let closeEvent: Socket.CloseEvent | undefined

  const backlog = () => queuedBytes + (tcp?.writableLength ?? 0)

  const close = (code: number, reason: string) => {
    if (closeEvent !== undefined) return
    closeEvent = new Socket.CloseEvent(code, reason)
    Deferred.unsafeDone(closingSignal, Effect.void)
    queue.unsafeOffer(null)
  }

  const enqueue = (out: OutFrame) => {
    queuedBytes += out.bytes
    queue.unsafeOffer(out)
  }

  /** since when the live backlog has been over `maxBufferedBytes`, without a send finding it under */
  let overSince: number | undefined
  const send = (out: OutFrame) => {
    if (closeEvent !== undefined) return false
    const pending = backlog() + out.bytes
    if (pending <= options.maxBufferedBytes) overSince = undefined
    else if (pending > 4 * options.maxBufferedBytes) {
      close(Api.FeedClose.tooSlow, `too slow: ${pending} bytes buffered`)
      return false
    } else {
      const now = Date.now()
      overSince ??= now
      if (now - overSince >= options.slowAfterMs) {
        close(Api.FeedClose.tooSlow, `too slow: ${pending} bytes buffered for ${now - overSince} ms`)
        return false
      }
    }
    enqueue(out)
    return true
  }

  const trySend = (out: OutFrame) => {
    if (closeEvent !== undefined || backlog() > options.lowWaterBytes) return false
    enqueue(out)
    return true
  }

  const sendPaced = (out: OutFrame) =>
    Effect.gen(function* () {
      if (backlog() > options.lowWaterBytes) {
        const deadline = Date.now() + options.drainTimeoutMs
        while (closeEvent === undefined && backlog() > options.lowWaterBytes) {
          if (Date.now() > deadline) {
            close(Api.FeedClose.tooSlow, `too slow: ${backlog()} bytes buffered after ${options.drainTimeoutMs} ms`)
            break
          }
          yield* Effect.sleep(5)
        }
      }
      if (closeEvent !== undefined) return false
      enqueue(out)
      return true
    })

  // A batch goes out corked: one syscall for everything queued since the last one, instead of one
  // per frame (a burst to many clients is otherwise bound by syscalls).
  const writeBatch = (batch: Iterable<OutFrame | null>) =>
    Effect.suspend(() => {
      tcp?.cork()
      return Effect.forEach(
        batch,
        (out) => {
          if (out === null || closeEvent !== undefined) return Effect.void
          queuedBytes -= out.bytes
          return write(out.json)
        },
        { discard: true }
      )
    }).pipe(Effect.ensuring(Effect.sync(() => tcp?.uncork())))

  // The close frame goes out ahead of anything still queued: a slow client would otherwise never
  // reach it. A client that does not read it within the grace loses its socket anyway.
  const writer = Effect.gen(function* () {
    while (closeEvent === undefined) yield* writeBatch(yield* Queue.takeBetween(queue, 1, 1024))
    yield* write(closeEvent)
    yield* Effect.sleep(options.closeGraceMs)
    tcp?.destroy()
  }).pipe(Effect.ignore)
  yield* Effect.forkScoped(writer)

  return {
    send,
    trySend,
    sendPaced,
    close,
    isClosing: () => closeEvent !== undefined,
    backlog,
    closing: Deferred.await(closingSignal)
  } satisfies Outbound
})
