import { describe, it } from "@effect/vitest"
import { SessionId } from "@sam/bus"
import { Effect, Fiber } from "effect"
import { expect } from "vitest"
import type { CatchUp } from "../src/feed/CatchUp.js"
import type { Outbound, OutFrame } from "../src/feed/Outbound.js"
import * as SessionStream from "../src/feed/SessionStream.js"

const frameOf = (seq: number): OutFrame => {
  const json = JSON.stringify({ type: "session.event", seq })
  return { json, bytes: json.length }
}

/**
 * The exactly-once algorithm on its own, against adversarial schedules: the bus delivers committed
 * events late, twice, out of order or not at all (but never the newest one), while the transcript
 * reads are interleaved with it at random. Whatever happens, the client must see afterSeq+1..N once
 * each, in order, with `caught-up` between the caught-up part and the live part.
 */
const schedule = (seed: number, options: { readonly afterSeq: number; readonly maxPendingBytes: number }) =>
  Effect.gen(function* () {
    let state = seed
    const random = () => {
      state = (state * 1103515245 + 12345) % 2 ** 31
      return state / 2 ** 31
    }
    const yields = (n: number) => Effect.repeatN(Effect.yieldNow(), Math.floor(random() * n))
    const transcript: Array<number> = []
    const wire: Array<string> = []
    const record = (out: OutFrame) => {
      wire.push(out.json)
      return true
    }
    const out: Outbound = {
      send: record,
      trySend: (f) => random() < 0.7 && record(f),
      sendPaced: (f) => yields(3).pipe(Effect.as(record(f))),
      close: () => {},
      isClosing: () => false,
      backlog: () => 0,
      closing: Effect.never,
      open: () => {}
    }
    const catchUp: CatchUp = {
      snapshot: () => Effect.succeed({ json: '{"type":"snapshot"}', bytes: 19 }),
      // as Postgres answers: up to `limit` rows, cut after the one that crosses `maxBytes`; more
      // when a row past them exists
      page: (_sessionId, after, limit, maxBytes) =>
        Effect.gen(function* () {
          yield* yields(4)
          const taken = transcript.filter((seq) => seq > after).slice(0, limit + 1)
          const entries: Array<{ seq: number; json: string }> = []
          let bytes = 0
          for (const seq of taken.slice(0, limit)) {
            if (bytes >= maxBytes) break
            const json = JSON.stringify({ seq })
            entries.push({ seq, json })
            bytes += json.length
          }
          yield* yields(4)
          return { more: entries.length < taken.length, entries }
        })
    }
    const TOTAL = 300
    for (let seq = 1; seq <= 40; seq++) transcript.push(seq)
    const stream = yield* SessionStream.make(SessionId.parse("sess_x"), options.afterSeq, out, catchUp, {
      maxPendingBytes: options.maxPendingBytes,
      pageSize: 16,
      // about 5 frames: pages end on bytes as well as on rows
      pageBytes: frameOf(1).bytes * 5
    })
    const running = yield* Effect.fork(stream.run)
    // the actor commits, then the relay publishes: sometimes late, twice, out of order, or lost
    const inFlight: Array<number> = []
    for (let seq = 41; seq <= TOTAL; seq++) {
      transcript.push(seq)
      if (random() < 0.9 || seq === TOTAL) inFlight.push(seq)
      if (random() < 0.1) inFlight.push(seq)
      while (inFlight.length > 0 && random() < 0.6) {
        const [next] = inFlight.splice(Math.floor(random() * Math.min(3, inFlight.length)), 1)
        stream.onLive(next as number, frameOf(next as number))
      }
      yield* yields(3)
    }
    for (const seq of inFlight.sort((a, b) => a - b)) stream.onLive(seq, frameOf(seq))
    // a `session.events` frame stands for its entries, each a `session.event`
    const seqsIn = (json: string): Array<number> => {
      const frame = JSON.parse(json)
      if (frame.type === "session.event") return [frame.seq]
      if (frame.type === "session.events") return frame.events.map((e: { seq: number }) => e.seq)
      return []
    }
    const seqs = () => wire.flatMap(seqsIn)
    for (let i = 0; i < 10_000 && seqs().at(-1) !== TOTAL; i++) yield* Effect.yieldNow()
    yield* Fiber.interrupt(running)
    const expected = Array.from({ length: TOTAL - options.afterSeq }, (_, i) => options.afterSeq + 1 + i)
    expect(seqs()).toEqual(expected)
    expect(wire[0]).toBe('{"type":"snapshot"}')
    const caughtUp = wire.findIndex((j) => j.includes('"caught-up"'))
    expect(caughtUp).toBeGreaterThan(0)
    const lastSeq = JSON.parse(wire[caughtUp] as string).lastSeq as number
    expect(lastSeq).toBeGreaterThanOrEqual(Math.max(40, options.afterSeq))
    expect(seqsIn(wire[caughtUp - 1] as string).at(-1) ?? options.afterSeq).toBe(lastSeq)
  })

describe("feed: the session stream's exactly-once algorithm", () => {
  it.effect(
    "holds under 200 random schedules, from the start or mid-way, with ample or tiny holding room",
    () =>
      Effect.gen(function* () {
        for (let seed = 1; seed <= 200; seed++) {
          yield* schedule(seed, {
            afterSeq: seed % 3 === 0 ? 0 : seed % 3 === 1 ? 25 : 55,
            maxPendingBytes: seed % 2 === 0 ? 1_000_000 : 60
          })
        }
      }),
    // About 1 s of CPU; a machine busy with the rest of the suite can make that several times longer.
    30_000
  )
})
