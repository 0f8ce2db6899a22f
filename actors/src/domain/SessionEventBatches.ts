import { Domain, type Envelope, makeId } from "@sam/bus"
import type * as Actor from "../ActorKind.js"

const { SessionEvents } = Domain
const SINGLE = SessionEvents.SessionEventAppended.type
const BATCH = SessionEvents.SessionEventBatch.type

type Appended = Envelope<typeof SINGLE, Domain.SessionEvents.SessionEventEntry & { readonly sessionId: string }>

const isAppended = (outgoing: Actor.Outgoing): boolean => outgoing.envelope.type === SINGLE

/**
 * A transaction's `session.event`s as `session.event-batch`es (issue 12): the entries of one session, one
 * request and one time (a batch carries one `at` for all; the session actor gives a transaction's entries one) that
 * its commands persisted together (a busy agent's reports, and under load the reports that
 * waited for one commit) go out as one message per `MAX_BATCH_ENTRIES` entries (or about `MAX_BATCH_BYTES`),
 * not one each. A run may pass over other sessions' entries, so a group's interleaved sessions still batch,
 * and ends at any other message (a session's status, a task's event), so those keep their place after the
 * entries before them. A batch goes where its first entry was, and names its first entry's cause. The
 * entries were checked when their events were made; a lone one stays a `session.event`.
 */
export const batchTranscript = (events: ReadonlyArray<Actor.Outgoing>): ReadonlyArray<Actor.Outgoing> => {
  if (events.filter(isAppended).length < 2) return events
  const out: Array<Actor.Outgoing> = []
  /** the runs still open, by session (their subject without the type), with where each goes in `out` */
  const open = new Map<string, { at: number; run: Array<Actor.Outgoing>; bytes: number }>()
  const close = (key: string) => {
    const { at, run } = open.get(key)!
    out[at] = run.length === 1 ? run[0]! : batchOf(run)
    open.delete(key)
  }
  for (const outgoing of events) {
    if (!isAppended(outgoing)) {
      for (const key of [...open.keys()]) close(key)
      out.push(outgoing)
      continue
    }
    const key = outgoing.subject.slice(0, -SINGLE.length)
    const size = JSON.stringify((outgoing.envelope as Appended).body.event).length + 64
    const current = open.get(key)
    if (
      current !== undefined &&
      current.run[0]!.envelope.correlationId === outgoing.envelope.correlationId &&
      current.run[0]!.envelope.at === outgoing.envelope.at &&
      current.run.length < SessionEvents.MAX_BATCH_ENTRIES &&
      current.bytes + size <= SessionEvents.MAX_BATCH_BYTES
    ) {
      current.run.push(outgoing)
      current.bytes += size
      continue
    }
    if (current !== undefined) close(key)
    open.set(key, { at: out.length, run: [outgoing], bytes: size })
    out.push(outgoing)
  }
  for (const key of [...open.keys()]) close(key)
  return out
}

const batchOf = (run: ReadonlyArray<Actor.Outgoing>): Actor.Outgoing => {
  const first = run[0]!
  const head = first.envelope as Appended
  const envelope: Envelope = {
    id: makeId("msg"),
    type: BATCH,
    at: head.at,
    causationId: head.causationId,
    correlationId: head.correlationId,
    body: {
      sessionId: head.body.sessionId,
      entries: run.map((o) => {
        const { sessionId: _, ...entry } = (o.envelope as Appended).body
        return entry
      })
    }
  }
  // in the trace of its first entry, as it names that entry's command as its cause
  return { subject: `${first.subject.slice(0, -SINGLE.length)}${BATCH}`, envelope, traceparent: first.traceparent }
}
