import { Domain, makeId, Subjects } from "@sam/bus"
import { describe, expect, it } from "vitest"
import * as Actor from "../src/ActorKind.js"
import { batchTranscript } from "../src/domain/SessionEventBatches.js"

const { SessionEvents } = Domain
const projectId = makeId("proj")
const sessionId = makeId("sess")

/** the time the session actor gives a transaction's entries */
const AT = new Date("2026-12-06T08:00:00.000Z")
const entry = (seq: number, text = `chunk ${seq}`, correlationId = "corr_a", session = sessionId, at = AT) =>
  Actor.event(
    projectId,
    "session",
    session,
    SessionEvents.SessionEventAppended.make(
      { sessionId: session, seq, promptEpoch: 1, nodeSeq: seq, event: { type: "text", text } },
      { correlationId, at }
    )
  )
const activity = () =>
  Actor.event(
    projectId,
    "session",
    sessionId,
    SessionEvents.SessionFailed.make({ sessionId, reason: "between" }, { correlationId: "corr_a" })
  )

/** What a reader gets: each message's type and the seqs it carries. */
const shape = (events: ReadonlyArray<Actor.Outgoing>) =>
  events.map(({ subject, envelope }) => {
    const body = envelope.body as { seq?: number; entries?: Array<{ seq: number }> }
    return {
      subject,
      type: envelope.type,
      seqs: body.entries?.map((e) => e.seq) ?? (body.seq === undefined ? [] : [body.seq])
    }
  })

describe("a transaction's transcript entries as batches (issue 12)", () => {
  it("sends a run as batches of at most 128 entries, in order, each decoding as a session.event-batch", () => {
    const out = batchTranscript(Array.from({ length: 300 }, (_, i) => entry(i + 1)))
    expect(shape(out).map((m) => [m.type, m.seqs.length])).toEqual([
      ["session.event-batch", 128],
      ["session.event-batch", 128],
      ["session.event-batch", 44]
    ])
    expect(shape(out).flatMap((m) => m.seqs)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1))
    expect(out[0]!.subject).toBe(Subjects.event(projectId, "session", sessionId, "session.event-batch"))
    const decoded = SessionEvents.sessionEvents.decode(new TextEncoder().encode(JSON.stringify(out[0]!.envelope)))
    expect(decoded._tag).toBe("Ok")
    expect(out[0]!.envelope.correlationId).toBe("corr_a")
  })

  it("keeps other events in their place, a lone entry as a session.event, and requests apart", () => {
    const out = batchTranscript([
      entry(1),
      entry(2),
      activity(),
      entry(3),
      entry(4, "x", "corr_b"),
      entry(5, "y", "corr_b")
    ])
    expect(shape(out).map((m) => [m.type, m.seqs])).toEqual([
      ["session.event-batch", [1, 2]],
      ["session.failed", []],
      ["session.event", [3]],
      ["session.event-batch", [4, 5]]
    ])
  })

  it("starts a new batch before the entries pass about 256 KiB", () => {
    const big = "x".repeat(100 * 1024)
    const out = batchTranscript([entry(1, big), entry(2, big), entry(3, big), entry(4)])
    expect(shape(out).map((m) => m.seqs)).toEqual([
      [1, 2],
      [3, 4]
    ])
  })

  it("batches each session's entries across another session's, and keeps a task's event after the entries before it", () => {
    const other = makeId("sess")
    const task = Actor.event(
      projectId,
      "task",
      makeId("task"),
      SessionEvents.SessionFailed.make({ sessionId: other, reason: "a task's event" }, { correlationId: "corr_a" })
    )
    const out = batchTranscript([
      entry(1),
      entry(7, "b", "corr_a", other),
      entry(2),
      entry(8, "b", "corr_a", other),
      entry(3),
      task,
      entry(4),
      entry(9, "b", "corr_a", other)
    ])
    expect(
      shape(out).map((m) => [
        m.subject.includes(other) ? "other" : m.subject.includes(sessionId) ? "this" : "task",
        m.type,
        m.seqs
      ])
    ).toEqual([
      ["this", "session.event-batch", [1, 2, 3]],
      ["other", "session.event-batch", [7, 8]],
      ["task", "session.failed", []],
      ["this", "session.event", [4]],
      ["other", "session.event", [9]]
    ])
  })

  it("keeps entries of another time apart: a batch carries one time for all its entries", () => {
    const later = new Date(AT.getTime() + 5)
    const out = batchTranscript([entry(1), entry(2), entry(3, "c", "corr_a", sessionId, later), entry(4)])
    expect(shape(out).map((m) => [m.type, m.seqs])).toEqual([
      ["session.event-batch", [1, 2]],
      ["session.event", [3]],
      ["session.event", [4]]
    ])
  })

  it("leaves a transaction with at most one entry as it was", () => {
    const events = [activity(), entry(1)]
    expect(batchTranscript(events)).toBe(events)
  })
})
