import type * as Net from "node:net"
import { Api } from "@sam/bus"
import { Deferred, Effect } from "effect"
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

/** The most a close frame's reason holds: 123 bytes of UTF-8 (RFC 6455 §5.5: a control frame's 125, less the code). */
const CLOSE_REASON_BYTES = 123

/** `reason` cut to what a close frame holds, between two characters (a revocation's reason may be up to 200). */
export const closeReason = (reason: string): string => {
  if (Buffer.byteLength(reason) <= CLOSE_REASON_BYTES) return reason
  let cut = ""
  let bytes = Buffer.byteLength("…")
  // by code point: a character outside the BMP is two UTF-16 units, never split in half
  for (const character of reason) {
    bytes += Buffer.byteLength(character)
    if (bytes > CLOSE_REASON_BYTES) break
    cut += character
  }
  return `${cut}…`
}

/** What a connection's frames are written to: the `ws` socket of its handshake (`Upgrade.upgrade`). */
export interface FrameSink {
  readonly send: (data: string) => void
  readonly close: (code: number, reason: string) => void
}

/**
 * The sending side of one connection. Frames wait in an array and go out corked in one write once the event loop's
 * current phase is over (`setImmediate`): everything queued meanwhile, for every session of the connection, in one
 * syscall (a burst to many clients is otherwise bound by syscalls), with no fiber woken per frame (issue 12). `ws`'s
 * send is synchronous and never pushes back, so the backlog is measured: what sits in the TCP socket's write buffer
 * plus what waits here. Live sends close a client whose backlog has stayed over `maxBufferedBytes` for
 * `slowAfterMs`, or passes four times it: one step may hand a client several batches of a session's
 * events at once (each up to 256 KiB), which says nothing of how fast it reads. Catch-up sends wait
 * for the backlog to drain instead, up to `drainTimeoutMs`. Nothing is written before `open`.
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
  /** the handshake is done: what waits goes out (or the close, when one was asked for meanwhile) */
  readonly open: (sink: FrameSink) => void
}

export const make = Effect.fn("Feed.outbound")(function* (tcp: Net.Socket | undefined, options: FeedOptions) {
  const closingSignal = yield* Deferred.make<void>()
  let sink: FrameSink | undefined
  let waiting: Array<OutFrame> = []
  let queuedBytes = 0
  let flushing: NodeJS.Immediate | undefined
  let closeEvent: { readonly code: number; readonly reason: string } | undefined
  let cut: NodeJS.Timeout | undefined
  let ended = false

  const backlog = () => queuedBytes + (tcp?.writableLength ?? 0)

  // A write `ws` refuses (it throws only for a socket that is not open yet, or a close it cannot send) ends the
  // connection rather than the caller: a frame cannot be half sent.
  const broken = () => {
    ended = true
    waiting = []
    tcp?.destroy()
  }

  const flush = () => {
    flushing = undefined
    if (sink === undefined || closeEvent !== undefined || ended) return
    const batch = waiting
    waiting = []
    queuedBytes = 0
    tcp?.cork()
    try {
      for (const out of batch) sink.send(out.json)
    } catch {
      broken()
    } finally {
      tcp?.uncork()
    }
  }

  // The close frame goes out ahead of anything still queued: a slow client would otherwise never
  // reach it. A client that does not read it within the grace loses its socket anyway.
  const sendClose = () => {
    if (sink === undefined || closeEvent === undefined || ended) return
    waiting = []
    queuedBytes = 0
    try {
      sink.close(closeEvent.code, closeEvent.reason)
    } catch {
      return broken()
    }
    cut = setTimeout(() => tcp?.destroy(), options.closeGraceMs)
  }

  const close = (code: number, reason: string) => {
    if (closeEvent !== undefined) return
    closeEvent = { code, reason: closeReason(reason) }
    Deferred.unsafeDone(closingSignal, Effect.void)
    sendClose()
  }

  const enqueue = (out: OutFrame) => {
    queuedBytes += out.bytes
    waiting.push(out)
    if (flushing === undefined && sink !== undefined) flushing = setImmediate(flush)
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

  const open = (opened: FrameSink) => {
    if (sink !== undefined || ended) return
    sink = opened
    if (closeEvent !== undefined) sendClose()
    else if (waiting.length > 0) flush()
  }

  // The connection is over (its socket closed, or the gateway stops): nothing more is written, no timer is left.
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      ended = true
      waiting = []
      if (flushing !== undefined) clearImmediate(flushing)
      if (cut !== undefined) clearTimeout(cut)
    })
  )

  return {
    send,
    trySend,
    sendPaced,
    close,
    isClosing: () => closeEvent !== undefined,
    backlog,
    closing: Deferred.await(closingSignal),
    open
  } satisfies Outbound
})
