import type { SessionId } from "@sam/bus"
import { Cause, Effect, Queue, Schedule } from "effect"
import type { CatchUp } from "./CatchUp.js"
import type { FeedOptions } from "./FeedConfig.js"
import { EVENTS_FRAME_BYTES, eventsFrame, frame, type Outbound, type OutFrame } from "./Outbound.js"

/**
 * One session subscribed on one connection: every `session.event` after the client's `afterSeq`,
 * exactly once and in seq order, whatever the interleaving of live events and transcript reads.
 *
 * `lastSent` is the one truth. A live event at or below it is a repeat and is dropped; the next one
 * is sent at once; one further ahead means something is missing (we are still catching up, or the
 * bus lost a message), so it is held while the gap is read from the transcript. The transcript has
 * every event before it is published (the actor's outbox publishes after its commit), so reading
 * from `lastSent` always finds what a live event skipped over. Held events are bounded: past
 * `maxPendingBytes` they are dropped and only the highest seq seen is kept, to be read back.
 */
export interface SessionStream {
  readonly sessionId: SessionId
  /** a live `session.event`, called by the fanout in arrival order; never blocks */
  readonly onLive: (seq: number, frame: OutFrame) => void
  /** read the transcript past `lastSent` even without a live event (the bus reconnected) */
  readonly poke: () => void
  /** snapshot, transcript after `afterSeq`, `caught-up`, then gap fills; runs until interrupted */
  readonly run: Effect.Effect<void>
}

const MAX_STALLS = 20

/**
 * A read of the snapshot (KV) or the transcript (Postgres) that fails is tried again (0.2 s doubling, at
 * most 2 s apart) for as long as the subscription lives: a subscription made while NATS or Postgres is
 * down (or a read that meets the outage) used to end its stream with the failure, leaving the client
 * subscribed to a session of which nothing ever came, neither catch-up nor live events (found by the
 * fault matrix, test/faults/matrix.test.ts). Reads change nothing, so trying again is safe.
 */
const patiently = <A>(sessionId: string, read: Effect.Effect<A>) =>
  read.pipe(
    Effect.sandbox,
    Effect.tapError((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.void
        : Effect.logWarning(`feed: reading session ${sessionId} failed; trying again`, Cause.pretty(cause))
    ),
    Effect.retry({
      schedule: Schedule.exponential("200 millis").pipe(Schedule.union(Schedule.spaced("2 seconds"))),
      while: (cause) => !Cause.isInterruptedOnly(cause)
    }),
    Effect.unsandbox
  )

export const make = Effect.fnUntraced(function* (
  sessionId: SessionId,
  afterSeq: number,
  out: Outbound,
  catchUp: CatchUp,
  options: Pick<FeedOptions, "maxPendingBytes" | "pageSize" | "pageBytes">
) {
  const wake = yield* Queue.sliding<void>(1)
  let lastSent = afterSeq
  let highestSeen = 0
  let filling = true
  let mustRead = true
  const pending = new Map<number, OutFrame>()
  let pendingBytes = 0

  const startFill = () => {
    if (filling) return
    filling = true
    wake.unsafeOffer(undefined)
  }

  const onLive = (seq: number, live: OutFrame) => {
    if (seq <= lastSent) return
    if (!filling && seq === lastSent + 1) {
      if (out.send(live)) lastSent = seq
      return
    }
    if (seq > highestSeen) highestSeen = seq
    if (!pending.has(seq) && pendingBytes + live.bytes <= options.maxPendingBytes) {
      pending.set(seq, live)
      pendingBytes += live.bytes
    }
    startFill()
  }

  const poke = () => {
    mustRead = true
    startFill()
  }

  /** The held event that comes next; when there is none, drops every held one already sent. */
  const nextPending = () => {
    const next = pending.get(lastSent + 1)
    if (next !== undefined) {
      pending.delete(lastSent + 1)
      pendingBytes -= next.bytes
      return next
    }
    for (const [seq, held] of pending) {
      if (seq > lastSent) continue
      pending.delete(seq)
      pendingBytes -= held.bytes
    }
    return undefined
  }

  const send = (seq: number, next: OutFrame) =>
    Effect.suspend(() => (out.trySend(next) ? Effect.succeed(true) : out.sendPaced(next))).pipe(
      Effect.map((sent) => {
        if (sent) lastSent = seq
        return sent
      })
    )

  /**
   * Send what is missing until nothing is: held events in order, else the transcript from
   * `lastSent`. It ends in the same synchronous step that finds nothing left and goes live, so a
   * live event can never slip between the last caught-up event and `onDone`.
   */
  const fill = (onDone: () => void) =>
    Effect.gen(function* () {
      let stalls = 0
      for (;;) {
        const held = nextPending()
        if (held !== undefined) {
          if (!(yield* send(lastSent + 1, held))) return
          continue
        }
        if (!mustRead && highestSeen <= lastSent) {
          filling = false
          onDone()
          return
        }
        const reading = mustRead
        mustRead = false
        const { entries: rows, more } = yield* patiently(
          sessionId,
          catchUp.page(sessionId, lastSent, options.pageSize, options.pageBytes)
        )
        // Runs of entries go out as one frame each (`session.events`, up to about EVENTS_FRAME_BYTES).
        let run: Array<string> = []
        let runBytes = 0
        let runLast = lastSent
        const flush = () => {
          const next = eventsFrame(sessionId, run)
          run = []
          runBytes = 0
          return send(runLast, next)
        }
        for (const row of rows) {
          if (row.seq <= lastSent) continue
          if (run.length > 0 && runBytes + row.json.length > EVENTS_FRAME_BYTES && !(yield* flush())) return
          run.push(row.json)
          runBytes += row.json.length
          runLast = row.seq
        }
        if (run.length > 0 && !(yield* flush())) return
        if (more) mustRead = true
        if (rows.length > 0 || reading || pending.has(lastSent + 1)) {
          stalls = 0
          continue
        }
        // Seen live but not in the transcript: only if rows were deleted (the session was). Wait a
        // little in case, then skip ahead rather than hold the subscription forever.
        if (++stalls > MAX_STALLS) {
          yield* Effect.logWarning(`feed: session ${sessionId} events after ${lastSent} are gone; skipping`)
          lastSent = pending.size > 0 ? Math.min(...pending.keys()) - 1 : highestSeen
          stalls = 0
        } else {
          yield* Effect.sleep(20 * stalls)
        }
      }
    })

  const run = Effect.gen(function* () {
    if (!(yield* out.sendPaced(yield* patiently(sessionId, catchUp.snapshot(sessionId))))) return
    yield* fill(() => {
      out.send(frame({ type: "caught-up", sessionId, lastSeq: lastSent }))
    })
    for (;;) {
      yield* Queue.take(wake)
      yield* fill(() => {})
    }
  }).pipe(Effect.withSpan("Feed.session", { attributes: { sessionId, afterSeq } }))

  return { sessionId, onLive, poke, run } satisfies SessionStream
})
