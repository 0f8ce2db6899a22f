import { Domain, Kv, KvConflict, Topology } from "@sam/bus"
import { Effect, Option } from "effect"

type Snapshot = Domain.SessionSnapshot

/** Sessions whose last stored snapshot an instance keeps (the oldest forgotten first). */
const KNOWN_MAX = 10_000

export interface SnapshotWrite {
  /** false when `decide` kept the current value (an older report, nothing to change) */
  readonly written: boolean
  readonly snapshot: Snapshot | undefined
}

type Decide = (current: Snapshot | undefined) => Snapshot | undefined

/**
 * The session-state snapshots in KV `sam_session_state` (design §6), one key per session id. Every
 * write is a compare-and-set on the key's revision: `decide` sees the current value and returns the
 * next, or `undefined` to keep it; a lost race reads again and decides again.
 *
 * A handler's `write` is staged, not stored: it answers what would be written, later reads of that
 * session see it, and `takeStaged` hands the writes over to run after the command commits (its
 * reaction's `afterCommit`), so a fenced or rolled-back command leaves KV as it was. Staging is per
 * session and transaction (`begin`): the commands of one group commit see each other's writes.
 */
export const open = Effect.fn("SessionSnapshots.open")(function* () {
  const store = yield* Kv.open(Topology.Buckets.sessionState.name, Domain.SessionSnapshot)
  const staged = new Map<
    string,
    {
      /** whether `value` is this transaction's view (else KV is read) */
      loaded: boolean
      value: Snapshot | undefined
      writes: Array<Decide>
      readonly transaction: string | undefined
    }
  >()
  const read = (sessionId: string) =>
    store.get(sessionId).pipe(
      // A value that no longer parses is replaced, never trusted.
      Effect.catchTag("KvCorrupt", () => Effect.succeed(Option.none<Kv.KvEntry<Snapshot>>()))
    )
  /**
   * What this instance last stored for each session, with its revision: the next write tries its
   * compare-and-set on it without reading KV first (a KV round trip per session command, issue 12).
   * Should anyone have written since, the set fails and the write reads and decides again.
   */
  const known = new Map<string, Kv.KvEntry<Snapshot>>()
  const remember = (sessionId: string, entry: Kv.KvEntry<Snapshot>) => {
    known.delete(sessionId)
    known.set(sessionId, entry)
    if (known.size > KNOWN_MAX) known.delete(known.keys().next().value as string)
  }
  const storeNow = (
    sessionId: string,
    decide: (current: Snapshot | undefined) => Snapshot | undefined
  ): Effect.Effect<SnapshotWrite, unknown> =>
    Effect.gen(function* () {
      for (let attempt = 1; ; attempt++) {
        const cached = attempt === 1 ? known.get(sessionId) : undefined
        const current = cached !== undefined ? Option.some(cached) : yield* read(sessionId)
        const value = Option.getOrUndefined(current)?.value
        const next = decide(value)
        if (next === undefined) {
          if (cached === undefined) return { written: false, snapshot: value }
          // nothing to change on what this instance knows: decided again on what KV holds
          known.delete(sessionId)
          continue
        }
        const revision = yield* (
          Option.isSome(current) ? store.update(sessionId, next, current.value.revision) : store.create(sessionId, next)
        ).pipe(
          Effect.catchIf(
            (error): error is KvConflict => error instanceof KvConflict && attempt < 10,
            () => Effect.succeed(undefined)
          )
        )
        if (revision !== undefined) {
          remember(sessionId, { value: next, revision })
          return { written: true, snapshot: next }
        }
        known.delete(sessionId)
      }
    })
  /** This transaction's view of the session: KV's value with what was staged unread applied over it. */
  const view = (sessionId: string) =>
    Effect.gen(function* () {
      const stage = staged.get(sessionId)
      if (stage?.loaded === true) return stage.value
      let value = Option.getOrUndefined(yield* read(sessionId))?.value
      for (const decide of stage?.writes ?? []) value = decide(value) ?? value
      if (stage !== undefined) {
        stage.loaded = true
        stage.value = value
      }
      return value
    })
  const push = (sessionId: string, decide: Decide, next: Snapshot | undefined) => {
    const stage = staged.get(sessionId)
    if (stage === undefined) {
      staged.set(sessionId, { loaded: next !== undefined, value: next, writes: [decide], transaction: undefined })
      return
    }
    if (next !== undefined) {
      stage.loaded = true
      stage.value = next
    }
    stage.writes.push(decide)
  }
  const write = (sessionId: string, decide: Decide): Effect.Effect<SnapshotWrite, unknown> =>
    Effect.gen(function* () {
      const value = yield* view(sessionId)
      const next = decide(value)
      if (next === undefined) return { written: false, snapshot: value }
      push(sessionId, decide, next)
      return { written: true, snapshot: next }
    })
  /**
   * Stage a write whose answer the caller does not need, without reading KV: an agent's event only
   * moves `lastSeq` (and the plan), and reading the snapshot inside the transaction held a Postgres
   * connection for a KV round trip per event (issue 12). It is decided with the others after commit.
   */
  const stage = (sessionId: string, decide: Decide) =>
    Effect.sync(() => {
      const current = staged.get(sessionId)
      if (current?.loaded === true) {
        const next = decide(current.value)
        if (next !== undefined) current.value = next
        current.writes.push(decide)
      } else push(sessionId, decide, undefined)
    })
  const get = (sessionId: string) => view(sessionId)
  /**
   * A command of this session begins in `transaction`: what another transaction staged (an earlier
   * attempt that failed, or one committed since) is dropped; what an earlier command of this very
   * transaction staged (a group commit) stays its view.
   */
  const begin = (sessionId: string, transaction: string | undefined) => {
    const stage = staged.get(sessionId)
    if (stage !== undefined && transaction !== undefined && stage.transaction === transaction) return
    staged.delete(sessionId)
    if (transaction !== undefined) staged.set(sessionId, { loaded: false, value: undefined, writes: [], transaction })
  }
  /**
   * What this transaction staged, stored after its commit: decided again on what is there, one after
   * the other, in one compare-and-set. The writes are taken when the effect runs, not when it is made:
   * every command of a group commit hands one over, and the first to run after the commit stores the
   * writes of all of them (a group of a session's events writes once; the rest find nothing). The
   * session's next transaction cannot begin before they ran: its group waits for this one's answer.
   */
  const takeStaged = (sessionId: string): ReadonlyArray<Effect.Effect<void, unknown>> => {
    const stage = staged.get(sessionId)
    if (stage === undefined || stage.writes.length === 0) return []
    return [
      Effect.suspend(() => {
        const writes = stage.writes
        if (writes.length === 0) return Effect.void
        // The view stays for the next command of the same transaction; the writes go now.
        stage.writes = []
        const decideAll: Decide = (current) => {
          let value = current
          let changed = false
          for (const decide of writes) {
            const next = decide(value)
            if (next !== undefined) {
              value = next
              changed = true
            }
          }
          return changed ? value : undefined
        }
        // Stored: the view has served its transaction (unless a later one took the stage over meanwhile).
        const forget = Effect.sync(() => {
          const now = staged.get(sessionId)
          if (now === stage && now.writes.length === 0) staged.delete(sessionId)
        })
        return Effect.asVoid(storeNow(sessionId, decideAll)).pipe(Effect.ensuring(forget))
      })
    ]
  }
  return { write, stage, get, begin, takeStaged }
})

export type SessionSnapshots = Effect.Effect.Success<ReturnType<typeof open>>

/**
 * True when a node's report observed at `observedAt` in `promptEpoch` may replace `current`: a later
 * epoch, or the same epoch and not older. Over what the control plane itself wrote for that epoch
 * (a prompt it just sent) the node's word wins whatever the clocks say, since the two clocks differ.
 */
export const reportIsCurrent = (current: Snapshot | undefined, promptEpoch: number, observedAt: string) =>
  current === undefined ||
  promptEpoch > current.promptEpoch ||
  (promptEpoch === current.promptEpoch &&
    (current.source === "control_plane" || Date.parse(observedAt) >= Date.parse(current.updatedAt)))
