import { Domain, type Envelope, makeId } from "@sam/bus"
import type * as Actor from "../ActorKind.js"

const { SessionEvents } = Domain
const SINGLE = SessionEvents.SessionEventAppended.type
const BATCH = SessionEvents.SessionEventBatch.type

type Appended = Envelope<typeof SINGLE, Domain.SessionEvents.SessionEventEntry & { readonly sessionId: string }>

const isAppended = (outgoing: Actor.Outgoing): boolean => outgoing.envelope.type === SINGLE

/**
 * A reaction's consecutive `session.event`s of one session and one request as `session.event-batch`es
 * (issue 12): a run of reports persisted in one transaction goes out as one message per
 * `MAX_BATCH_ENTRIES` entries (or about `MAX_BATCH_BYTES`), not one each. The entries were checked when
 * their events were made; a lone one stays a `session.event`. Everything else keeps its place.
 */
export const batchTranscript = (events: ReadonlyArray<Actor.Outgoing>): ReadonlyArray<Actor.Outgoing> => {
  if (events.filter(isAppended).length < 2) return events
  const out: Array<Actor.Outgoing> = []
  let run: Array<Actor.Outgoing> = []
  let bytes = 0
  const flush = () => {
    if (run.length === 1) out.push(run[0]!)
    else if (run.length > 1) out.push(batchOf(run))
    run = []
    bytes = 0
  }
  for (const outgoing of events) {
    if (!isAppended(outgoing)) {
      flush()
      out.push(outgoing)
      continue
    }
    const first = run[0]
    const size = JSON.stringify((outgoing.envelope as Appended).body.event).length + 64
    if (
      first !== undefined &&
      (first.subject !== outgoing.subject ||
        first.envelope.correlationId !== outgoing.envelope.correlationId ||
        run.length >= SessionEvents.MAX_BATCH_ENTRIES ||
        bytes + size > SessionEvents.MAX_BATCH_BYTES)
    )
      flush()
    run.push(outgoing)
    bytes += size
  }
  flush()
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
  return { subject: `${first.subject.slice(0, -SINGLE.length)}${BATCH}`, envelope }
}
