import { SqlClient, type SqlError, type Statement } from "@effect/sql"
import type { Envelope } from "@sam/bus"
import { ActorMessages, Subjects, Trace } from "@sam/bus"
import { Data, Effect, Exit } from "effect"
import type { ActorContext, AnyActorKind, HeldSave, Outgoing, TimerInstruction } from "../ActorKind.js"
import { Fenced, HandlerFailed } from "../Errors.js"
import type { CommittedIn } from "./Settings.js"

export type CommitResult = ({ readonly _tag: "Applied"; readonly reply: unknown } | { readonly _tag: "Duplicate" }) & {
  readonly committedIn?: CommittedIn
}

export interface DeadLetter {
  readonly kind: string
  readonly shard: number
  readonly epoch: number
  readonly entityId: string | null
  /** the envelope id when known; otherwise the inbox key is derived from the stream sequence */
  readonly messageId: string | null
  readonly subject: string
  readonly streamSequence: number
  readonly reason: ActorMessages.DeadLetterReason
  readonly detail: string
  readonly payload: string
}

export interface ClaimedRow {
  readonly messageId: string
  readonly subject: string
  readonly payload: string
  /** the W3C trace context of the handler that wrote it, sent as the message's `traceparent` header */
  readonly traceparent?: string | null | undefined
}

const decoder = new TextDecoder()
/** Advisory lock key of the outbox relay ("sam-outbox" as a number). */
const OUTBOX_LOCK = 0x5a4d0b0c
export const text = (data: Uint8Array) => decoder.decode(data)
/** An envelope as the text `encode` writes as bytes (a row's payload; not encoded and decoded again). */
const envelopeText = (envelope: Envelope) => JSON.stringify(envelope)

/** Where runtime events about an entity go (they belong to no project). */
export const systemEvent = (kind: string, id: string | null, envelope: Envelope): Outgoing => ({
  subject: Subjects.event(
    ActorMessages.SYSTEM_PROJECT,
    kind,
    id !== null && Subjects.isToken(id) ? id : "unknown",
    envelope.type
  ),
  envelope
})

/**
 * Transactions begun in this process, for their ids (`ActorContext.transaction`): unique across the process's
 * stores, since what a kind keeps by transaction (a session's staged snapshot) is kept per kind, and two runtimes
 * of one process may hold one kind.
 */
let transactions = 0

/**
 * A group that cannot commit in one statement (ADR 0056): one of its messages was a repeat, an id came twice, or a
 * command needed a load after the group's first saves. It runs again in a transaction that claims first.
 */
class NeedsTransaction extends Data.TaggedError("NeedsTransaction")<{ readonly why: string }> {}

/** The codes `sam_commit_check` raises (migration 0023): the fence moved on; an id was in the inbox already. */
const FENCED_CODE = "SAM01"
const REPEAT_CODE = "SAM02"
const errorCode = (error: unknown): { readonly code?: unknown; readonly detail?: unknown } => {
  const cause = (error as { readonly cause?: unknown } | undefined)?.cause
  return typeof cause === "object" && cause !== null ? cause : {}
}

/** How long a commit may sit idle once it holds its shard's fence row (see `writeOutboxAndCheckFence`). */
const FENCE_HOLD_MS = 2_000

/**
 * How long the relay leaves a committed outbox row to the commit that wrote it: that commit publishes its rows
 * itself (`onCommitted`); the relay publishes what it could not (a failed publish, a process gone meanwhile).
 */
const DIRECT_PUBLISH_GRACE_MS = 2_000
/** Most entities' states a store keeps from one group to the next (`kind.keep`). */
const KEPT_MAX = 10_000

/**
 * The runtime's SQL. Every statement is raw SQL with snake_case names and single-word aliases.
 * `onCommitted` is called, synchronously and in commit order, with the outbox rows of each commit: the
 * committer publishes them at once (issue 12: no relay transaction on every hop) and marks them sent
 * (`markSent`); what it does not mark, the relay publishes after `DIRECT_PUBLISH_GRACE_MS`.
 */
export const makeStore = (
  sql: SqlClient.SqlClient,
  idleInTransactionMs: number,
  onCommitted: (rows: ReadonlyArray<ClaimedRow>) => void = () => {}
) => {
  /**
   * What each entity's kind keeps of its state as this process last committed it (`kind.keep`), with the shard's
   * epoch of that commit, by `kind/id`: a later group of the entity at the same epoch starts from it instead of
   * loading (issue 12). At most `KEPT_MAX`, the least recently committed going first.
   */
  const kept = new Map<string, { readonly epoch: number; readonly state: unknown }>()
  const keptState = (input: CommandInput) => {
    const keep = input.kind.keep
    if (keep === undefined) return undefined
    const entry = kept.get(`${input.kind.name}/${input.id}`)
    return entry === undefined || entry.epoch !== input.epoch ? undefined : keep.reuse(entry.state, input.envelope)
  }
  /** After a commit: what the group's kind keeps of each entity's last state. */
  const remember = (inputs: ReadonlyArray<CommandInput>, carried: ReadonlyMap<string, unknown>) => {
    const { kind, epoch } = inputs[0]!
    if (kind.keep === undefined) return
    for (const [key, state] of carried) {
      kept.delete(key)
      const keeping = kind.keep.remember(state)
      if (keeping !== undefined) kept.set(key, { epoch, state: keeping })
    }
    for (const key of kept.keys()) {
      if (kept.size <= KEPT_MAX) break
      kept.delete(key)
    }
  }
  /** A group that did not commit (or whose commit is not known): its entities are loaded next time. */
  const forget = (inputs: ReadonlyArray<CommandInput>) => {
    for (const input of inputs) kept.delete(`${input.kind.name}/${input.id}`)
  }

  // One statement both claims the message id and bounds how long this transaction may sit idle: an
  // owner frozen mid-transaction (SIGSTOP) must not hold its row locks forever.
  const claimInbox = (messageId: string, kind: string, entityId: string) =>
    sql<{ mid: string }>`
      INSERT INTO actor_inbox (message_id, kind, entity_id)
      SELECT ${messageId}, ${kind}, ${entityId}
      WHERE set_config('idle_in_transaction_session_timeout', ${String(idleInTransactionMs)}, true) IS NOT NULL
      ON CONFLICT (message_id) DO NOTHING
      RETURNING message_id AS mid`.pipe(Effect.map((rows) => rows.length > 0))

  /**
   * The inbox rows of a group's messages (issue 12: one statement for them all, not one each; a statement costs a
   * round trip and a syscall, and a group holds tens of commands in a burst), with the ids they carry
   * (`carriedIds`): the commands' ids first, then the carried ones, each in the group's order, so that an id
   * claimed twice in the statement is its first holder's. Only the ids claimed now are returned: an id already in
   * the inbox is a repeat.
   */
  const inboxInsert = (rows: ReadonlyArray<InboxRow>) =>
    sql`INSERT INTO actor_inbox (message_id, kind, entity_id, type, correlation_id)
      SELECT * FROM unnest(
        ${rows.map((row) => row.id)}::text[],
        ${rows.map((row) => row.input.kind.name)}::text[],
        ${rows.map((row) => row.input.id)}::text[],
        ${rows.map((row) => row.type)}::text[],
        ${rows.map((row) => row.input.envelope.correlationId ?? row.input.envelope.id)}::text[])`

  /** Claim them in a transaction, which the same statement bounds in how long it may sit idle (as `claimInbox`). */
  const claimInboxes = (rows: ReadonlyArray<InboxRow>) =>
    sql<{ mid: string }>`
      ${inboxInsert(rows)}
      WHERE set_config('idle_in_transaction_session_timeout', ${String(idleInTransactionMs)}, true) IS NOT NULL
      ON CONFLICT (message_id) DO NOTHING
      RETURNING message_id AS mid`.pipe(Effect.map((found) => new Set(found.map((row) => row.mid))))

  /**
   * Outbox rows in order, in one statement whose text does not change with their number (issue 12): `unnest` of
   * arrays, so Postgres parses it once per connection (a named statement, ADR 0033) and a group of any size
   * takes no parameter per row (Postgres takes at most 65,535 in one statement).
   */
  const outboxStatement = (rows: ReadonlyArray<ClaimedRow>) =>
    sql`INSERT INTO actor_outbox (message_id, subject, payload, traceparent)
      SELECT message_id, subject, payload, traceparent FROM unnest(${rows.map((row) => row.messageId)}::text[], ${rows.map((row) => row.subject)}::text[],
        ${rows.map((row) => row.payload)}::text[], ${rows.map((row) => row.traceparent ?? null)}::text[])
        WITH ORDINALITY AS o(message_id, subject, payload, traceparent, n)
      ORDER BY n
      ON CONFLICT (message_id) DO NOTHING`

  /** An outgoing message as its outbox row (encoded once: the row and the commit's own publish share it). */
  const rowOf = (row: Outgoing): ClaimedRow => ({
    messageId: row.envelope.id,
    subject: row.subject,
    payload: envelopeText(row.envelope),
    traceparent: row.traceparent
  })

  // From the fence check to COMMIT a commit holds the shard's fence row (FOR SHARE), which a new owner
  // must update to take the shard. That gap is a few statements' time: an owner frozen in it (SIGSTOP, a
  // paused VM) would block the takeover for the whole `idleInTransaction` (30 s; a minute in the
  // failover test), so the check also shortens the idle bound for the rest of the transaction.
  // The transaction's outbox rows are written by the same statement, in its WITH: one round trip less per
  // commit (issue 12).
  /** Statements a kind's `saveMany` left to the runtime, as the parts of a WITH: `saved0 AS (…), saved1 AS (…)`. */
  const savedAs = (saves: ReadonlyArray<Statement.Statement<unknown>>, name = "saved") =>
    sql.csv(saves.map((save, i) => sql`${sql.literal(`${name}${i}`)} AS (${save})`))

  // The saves a kind's `saveMany` left to the runtime, and the group's timers, go in the same WITH: another round
  // trip less each.
  const writeOutboxAndCheckFence = (
    written: ReadonlyArray<Statement.Fragment>,
    kind: string,
    shard: number,
    epoch: number
  ) =>
    Effect.gen(function* () {
      const fence = sql`
        SELECT epoch FROM actor_shard_fences
        WHERE kind = ${kind} AND shard = ${shard}
          AND set_config('idle_in_transaction_session_timeout', ${String(Math.min(idleInTransactionMs, FENCE_HOLD_MS))}, true) IS NOT NULL
        FOR SHARE`
      const found = yield* written.length === 0
        ? sql<{ epoch: string }>`${fence}`
        : sql<{ epoch: string }>`WITH ${sql.csv(written)} ${fence}`
      const current = found[0] === undefined ? null : Number(found[0].epoch)
      if (current !== epoch) return yield* Effect.fail(new Fenced({ kind, shard, epoch, current }))
    })

  /**
   * A group's timer instructions, in order, as at most two statements for its last statement's WITH: each timer as
   * the last instruction about it left it (set, or cancelled), as writing them one after another would. A set timer's
   * command goes to the entity's own subject when due.
   */
  const timerStatements = (kind: AnyActorKind, timers: ReadonlyArray<{ id: string; timer: TimerInstruction }>) => {
    const last = new Map<string, { id: string; timer: TimerInstruction }>()
    for (const entry of timers) {
      const key = JSON.stringify([entry.id, entry.timer.name])
      last.delete(key)
      last.set(key, entry)
    }
    const sets: Array<{ id: string; timer: Extract<TimerInstruction, { _tag: "Set" }> }> = []
    const cancels: Array<{ id: string; name: string }> = []
    for (const { id, timer } of last.values())
      if (timer._tag === "Set") sets.push({ id, timer })
      else cancels.push({ id, name: timer.name })
    return [
      ...(sets.length === 0
        ? []
        : [
            sql`INSERT INTO actor_timers (kind, entity_id, name, due_at, message_id, subject, payload)
              SELECT ${kind.name}, * FROM unnest(${sets.map((t) => t.id)}::text[], ${sets.map((t) => t.timer.name)}::text[],
                ${sets.map((t) => t.timer.at.toISOString())}::timestamptz[], ${sets.map((t) => t.timer.command.id)}::text[],
                ${sets.map((t) => Subjects.command(kind.name, Subjects.shardOf(t.id, kind.shards), t.id))}::text[],
                ${sets.map((t) => envelopeText(t.timer.command))}::text[])
              ON CONFLICT (kind, entity_id, name) DO UPDATE SET due_at = EXCLUDED.due_at,
                message_id = EXCLUDED.message_id, subject = EXCLUDED.subject, payload = EXCLUDED.payload`
          ]),
      ...(cancels.length === 0
        ? []
        : [
            sql`DELETE FROM actor_timers WHERE kind = ${kind.name}
              AND (entity_id, name) IN (SELECT * FROM unnest(${cancels.map((t) => t.id)}::text[], ${cancels.map((t) => t.name)}::text[]))`
          ])
    ]
  }

  /** What a group writes in its last statement's WITH: the saves `saveMany` left, the outbox rows, the timers. */
  const groupWrites = (
    kind: AnyActorKind,
    rows: ReadonlyArray<ClaimedRow>,
    saves: ReadonlyArray<Statement.Statement<unknown>>,
    timers: ReadonlyArray<{ id: string; timer: TimerInstruction }>
  ): Array<Statement.Fragment> => [
    ...(saves.length === 0 ? [] : [savedAs(saves)]),
    ...(rows.length === 0 ? [] : [sql`written AS (${outboxStatement(rows)})`]),
    ...(timers.length === 0 ? [] : [savedAs(timerStatements(kind, timers), "timers")])
  ]

  /** A message id the group claims in the inbox: a command's own, or one it carries (`carriedIds`, with its place). */
  interface InboxRow {
    readonly input: CommandInput
    readonly id: string
    readonly type: string
    readonly at?: number
  }
  interface CommandInput {
    readonly kind: AnyActorKind
    readonly shard: number
    readonly epoch: number
    readonly id: string
    readonly envelope: Envelope
    readonly context: ActorContext<string>
    /** the W3C trace context the command came with (its NATS `traceparent` header) */
    readonly traceparent?: string | undefined
  }
  interface Applied {
    readonly result: CommitResult
    readonly afterCommit: ReadonlyArray<Effect.Effect<void, unknown>>
    readonly outgoing: number
  }

  /**
   * What the commands of one transaction share: the states saved so far by `<kind>/<id>` (for `carry`), the
   * states read ahead by `loadMany`, the saves held for `saveMany`, the outbox rows and the timers, written once for
   * the whole group, in order, in its last statement (with the fence check).
   */
  interface Group {
    readonly transaction: string
    readonly at: string
    readonly inOne: boolean
    readonly carried: Map<string, unknown>
    readonly preloaded: Map<string, unknown>
    readonly held: Array<HeldSave<string, unknown>>
    /** each with the trace context it continues: its own, or its handler's span */
    readonly outbox: Array<Outgoing>
    readonly timers: Array<{ readonly id: string; readonly timer: TimerInstruction }>
  }

  /**
   * Write the saves held for `kind.saveMany`, in their order. The statements it leaves to the runtime are run here,
   * or, at the transaction's end (`last`), returned for its last statement.
   */
  const flushHeld = (kind: AnyActorKind, group: Group, messageId: string, last = false) =>
    group.held.length === 0 || kind.saveMany === undefined
      ? Effect.succeed<ReadonlyArray<Statement.Statement<unknown>>>([])
      : Effect.suspend(() => {
          const entries = group.held.splice(0)
          return kind.saveMany!(entries).pipe(
            Effect.mapError((cause) => new HandlerFailed({ kind: kind.name, id: entries[0]!.id, messageId, cause })),
            Effect.flatMap(
              (
                statements
              ): Effect.Effect<ReadonlyArray<Statement.Statement<unknown>>, HandlerFailed, SqlClient.SqlClient> =>
                group.inOne && statements === undefined
                  ? Effect.dieMessage(`${kind.name}: a kind that commits in one statement wrote its saves itself`)
                  : statements === undefined || last
                    ? Effect.succeed(statements ?? [])
                    : statements.length === 0
                      ? Effect.succeed([])
                      : // one round trip for them all here too
                        (statements.length === 1 ? statements[0]! : sql`WITH ${savedAs(statements)} SELECT 1`).pipe(
                          Effect.as([]),
                          Effect.mapError(
                            (cause) => new HandlerFailed({ kind: kind.name, id: entries[0]!.id, messageId, cause })
                          )
                        )
            )
          )
        })

  /**
   * The first fresh command of each entity has its state read by one `loadMany` before any is handled (issue 12:
   * a statement per group, not per command), when the kind has one. In one statement every entity's state is read
   * before any command is handled (a `load` each without `loadMany`): a load after the group's first saves would
   * not see them.
   */
  const preload = (inputs: ReadonlyArray<CommandInput>, fresh: ReadonlyArray<boolean>, group: Group) =>
    Effect.suspend(() => {
      const { kind, id, envelope } = inputs[0]!
      const firsts = new Map<string, { id: string; command: Envelope }>()
      const seen = new Set<string>()
      inputs.forEach((input, i) => {
        if (!fresh[i] || seen.has(input.id)) return
        seen.add(input.id)
        // what this process committed of it last, at this epoch, when its kind may start from it
        const state = keptState(input)
        if (state !== undefined) group.preloaded.set(`${kind.name}/${input.id}`, state)
        else firsts.set(input.id, { id: input.id, command: input.envelope })
      })
      const failed = (cause: unknown) => new HandlerFailed({ kind: kind.name, id, messageId: envelope.id, cause })
      const keep = (states: ReadonlyMap<string, unknown>) =>
        Effect.sync(() => {
          for (const [entity, state] of states) group.preloaded.set(`${kind.name}/${entity}`, state)
        })
      const each = () =>
        group.inOne
          ? Effect.forEach(
              firsts.values(),
              (first) =>
                kind
                  .load(first.id, first.command)
                  .pipe(Effect.map((state) => group.preloaded.set(`${kind.name}/${first.id}`, state))),
              { discard: true }
            ).pipe(Effect.mapError(failed))
          : Effect.void // each loads when handled
      // one entity: its own `load` costs the same
      if (kind.loadMany === undefined || firsts.size < 2) return each()
      return kind.loadMany([...firsts.values()]).pipe(Effect.mapError(failed), Effect.flatMap(keep))
    })

  /**
   * Load, handle and save one command, its inbox row claimed (`fresh`) or found (a repeat), and its outbox rows
   * and timers; inside its group's transaction, or, in one statement, before it. What the
   * handler emits carries the command's correlation id (its own id when it came with none) and names
   * the command as its cause; the handler runs with that correlation id (issue 12). With spans exported
   * (`spanned`) the command's handling is an `Actor.apply` span whose trace context its messages carry; without,
   * no span is made (it would go nowhere) and they carry the trace context the command came with.
   */
  const applyOne = (
    input: CommandInput,
    fresh: boolean,
    group: Group,
    spanned: boolean,
    takeOver?: (messageId: string, type: string) => boolean,
    claimed?: ReadonlySet<string>
  ) => {
    const { kind, id, envelope } = input
    const correlationId = envelope.correlationId ?? envelope.id
    const follow = (next: Envelope): Envelope => ({
      ...next,
      correlationId: next.correlationId ?? correlationId,
      causationId: next.causationId ?? envelope.id
    })
    const applying = Effect.gen(function* () {
      const failed = (cause: unknown) => new HandlerFailed({ kind: kind.name, id, messageId: envelope.id, cause })
      if (!fresh) return { result: { _tag: "Duplicate" }, afterCommit: [], outgoing: 0 } satisfies Applied as Applied
      const traceparent = spanned ? yield* Trace.currentTraceparent : Trace.wellFormed(input.traceparent)
      const key = `${kind.name}/${id}`
      const before = group.carried.get(key)
      const carriedState = before === undefined || kind.carry === undefined ? undefined : kind.carry(before, envelope)
      const preloaded = group.preloaded.get(key)
      group.preloaded.delete(key)
      let previous: unknown
      if (carriedState !== undefined) previous = carriedState
      else if (preloaded !== undefined) previous = preloaded
      else {
        // a load reads what the saves held so far write: in one statement they are not written yet
        if (group.inOne && group.held.length > 0)
          return yield* new NeedsTransaction({ why: `${envelope.type} loads after the group's first saves` })
        yield* flushHeld(kind, group, envelope.id)
        previous = yield* kind.load(id, envelope).pipe(Effect.mapError(failed))
      }
      const reaction = yield* kind
        .handle(previous, envelope, {
          ...input.context,
          transaction: group.transaction,
          transactionAt: group.at,
          ...(traceparent === undefined ? {} : { traceparent }),
          ...(takeOver === undefined ? {} : { takeOver }),
          ...(claimed === undefined ? {} : { claimed })
        })
        .pipe(
          Effect.catchAllDefect((defect) => Effect.fail(defect)),
          Effect.mapError(failed)
        )
      if (kind.saveMany !== undefined) group.held.push({ id, state: reaction.state, previous, correlationId })
      else yield* kind.save(id, reaction.state, previous).pipe(Effect.mapError(failed))
      group.carried.set(key, reaction.state)
      const rows = [...(reaction.events ?? []), ...(reaction.send ?? [])].map((row) => ({
        ...row,
        envelope: follow(row.envelope),
        traceparent: row.traceparent ?? traceparent
      }))
      group.outbox.push(...rows)
      const timers = (reaction.timers ?? []).map((timer) =>
        timer._tag === "Set" ? { ...timer, command: follow(timer.command) } : timer
      )
      for (const timer of timers) group.timers.push({ id, timer })
      return {
        result: { _tag: "Applied", reply: reaction.reply },
        afterCommit: (reaction.afterCommit ?? []).map(Trace.withCorrelation(correlationId)),
        outgoing: rows.length
      } satisfies Applied as Applied
    }).pipe(Trace.withCorrelation(correlationId))
    return spanned
      ? applying.pipe(
          Trace.span("Actor.apply", () => ({
            captureStackTrace: false,
            ...Trace.spanOf(input.traceparent),
            attributes: {
              "actor.kind": kind.name,
              "actor.id": id,
              "message.type": envelope.type,
              "message.id": envelope.id,
              "correlation.id": correlationId
            }
          }))
        )
      : applying
  }

  /**
   * Handle a group's commands in order: `claim` tells which of their inbox rows are new (a repeat is `Duplicate`);
   * the kind's `loadMany` reads their entities' states, or each loads what the ones before it wrote; each is handled
   * and its save held (`saveMany`) or written. What is left for the last statement is returned: the inbox rows, the
   * saves' statements and the outbox rows.
   */
  const handleGroup = (
    inputs: ReadonlyArray<CommandInput>,
    group: Group,
    claim: (rows: ReadonlyArray<InboxRow>) => Effect.Effect<Set<string>, SqlError.SqlError | NeedsTransaction>
  ) =>
    Effect.gen(function* () {
      const first = inputs[0]!
      const spanned = yield* Trace.exported
      const applied: Array<Applied> = []
      // what each command carries, asked once; a command that carries ids gets the set of those it claimed
      const carriedOf = inputs.map((input) => input.kind.carriedIds?.(input.envelope))
      const inbox: Array<InboxRow> = [
        ...inputs.map((input) => ({ input, id: input.envelope.id, type: input.envelope.type })),
        ...carriedOf.flatMap((ids, at) => (ids ?? []).map(({ id, type }) => ({ input: inputs[at]!, at, id, type })))
      ]
      // a message twice in one group: its second time is a repeat, like any other
      const claimed = yield* claim(inbox)
      const fresh = inputs.map((input) => claimed.delete(input.envelope.id))
      const claimedCarried = carriedOf.map((ids) => (ids === undefined ? undefined : new Set<string>()))
      for (const { at, id } of inbox) if (at !== undefined && claimed.delete(id)) claimedCarried[at]?.add(id)
      yield* preload(inputs, fresh, group)
      // A handler may take over a later command of the group, of its entity and of the type it names, whose id it
      // claims itself (ActorContext.takeOver).
      let at = 0
      const takeOver = (messageId: string, type: string) => {
        const current = inputs[at]!
        for (let j = at + 1; j < inputs.length; j++) {
          const later = inputs[j]!
          if (fresh[j] === true && later.envelope.id === messageId && later.envelope.type === type) {
            if (later.kind !== current.kind || later.id !== current.id) return false
            fresh[j] = false
            return true
          }
        }
        return false
      }
      for (at = 0; at < inputs.length; at++)
        applied.push(yield* applyOne(inputs[at]!, fresh[at]!, group, spanned, takeOver, claimedCarried[at]))
      const saves = yield* flushHeld(first.kind, group, inputs[inputs.length - 1]!.envelope.id, true)
      const rows = (first.kind.batchOutgoing?.(group.outbox) ?? group.outbox).map(rowOf)
      return { applied, rows, saves, inbox }
    })

  const newGroup = (inOne: boolean): Group => ({
    transaction: `t${++transactions}`,
    at: new Date().toISOString(),
    inOne,
    carried: new Map(),
    preloaded: new Map(),
    held: [],
    outbox: [],
    timers: []
  })

  /**
   * The group in a transaction (group commit, issue 12): one statement claims the inbox rows of its messages
   * first, then each command is handled (`handleGroup`); one fence check, with the saves and outbox rows in its
   * WITH; one COMMIT.
   */
  const inTransaction = (inputs: ReadonlyArray<CommandInput>) => {
    const first = inputs[0]!
    const group = newGroup(false)
    return Effect.gen(function* () {
      const { applied, rows, saves } = yield* handleGroup(inputs, group, claimInboxes)
      yield* writeOutboxAndCheckFence(
        groupWrites(first.kind, rows, saves, group.timers),
        first.kind.name,
        first.shard,
        first.epoch
      )
      return { applied, rows, carried: group.carried, committedIn: "transaction" as CommittedIn }
    }).pipe(sql.withTransaction)
  }

  /**
   * The group in one statement (ADR 0056), for a kind that commits so (`commitsInOneStatement`): its states are
   * read and its commands handled first, as if every message were new, outside any transaction; then one
   * statement claims the inbox rows, writes the saves, outbox rows and timers, and checks the fence and the claim
   * (`sam_commit_check`): all of it commits, or none. A repeat among its messages fails it, and the group runs
   * again in a transaction (`NeedsTransaction`). One round trip to commit instead of four (BEGIN, claim, write,
   * COMMIT), besides the reads.
   */
  const inOneStatement = (inputs: ReadonlyArray<CommandInput>) =>
    Effect.gen(function* () {
      const first = inputs[0]!
      const group = newGroup(true)
      const { applied, rows, saves, inbox } = yield* handleGroup(inputs, group, (ids) =>
        Effect.suspend(() => {
          const all = new Set(ids.map((row) => row.id))
          return all.size === ids.length
            ? Effect.succeed(all)
            : Effect.fail(new NeedsTransaction({ why: "a message id comes twice in the group" }))
        })
      )
      const written = [
        sql`claimed AS (${inboxInsert(inbox)} ON CONFLICT (message_id) DO NOTHING RETURNING 1)`,
        ...groupWrites(first.kind, rows, saves, group.timers)
      ]
      yield* sql`WITH ${sql.csv(written)}
        SELECT sam_commit_check((SELECT count(*) FROM claimed), ${inbox.length},
          (SELECT epoch FROM actor_shard_fences WHERE kind = ${first.kind.name} AND shard = ${first.shard} FOR SHARE),
          ${first.epoch})`.pipe(
        Effect.catchAll((error): Effect.Effect<never, Fenced | NeedsTransaction | SqlError.SqlError> => {
          const { code, detail } = errorCode(error)
          if (code === FENCED_CODE)
            return Effect.fail(
              new Fenced({
                kind: first.kind.name,
                shard: first.shard,
                epoch: first.epoch,
                current: detail === "" || typeof detail !== "string" ? null : Number(detail)
              })
            )
          if (code === REPEAT_CODE) return Effect.fail(new NeedsTransaction({ why: "a message was a repeat" }))
          return Effect.fail(error)
        })
      )
      return { applied, rows, carried: group.carried, committedIn: "statement" as CommittedIn }
    })

  /**
   * Apply commands of one shard, in order, all or none (group commit, issue 12): in one statement when the kind
   * commits so and none of them needs a transaction, else in a transaction. Any failure writes nothing (`Fenced`
   * when the shard's epoch is no longer ours); the caller then applies them one at a time. After the commit, each
   * command's after-commit effects run, in order (never ahead of the ledger).
   */
  const commitGroup = (inputs: ReadonlyArray<CommandInput>) =>
    (inputs[0]!.kind.commitsInOneStatement === true
      ? inOneStatement(inputs).pipe(Effect.catchTag("NeedsTransaction", () => inTransaction(inputs)))
      : inTransaction(inputs)
    ).pipe(
      Effect.provideService(SqlClient.SqlClient, sql),
      // Committed: what lies outside Postgres follows now. Its failure no longer changes the outcome.
      Effect.onExit((exit) =>
        Effect.sync(() => (Exit.isSuccess(exit) ? remember(inputs, exit.value.carried) : forget(inputs)))
      ),
      Effect.map(({ applied, rows, committedIn }) => {
        if (rows.length > 0) onCommitted(rows)
        return applied.map((a) => ({ ...a, result: { ...a.result, committedIn } }))
      }),
      Effect.tap((applied) =>
        Effect.forEach(
          applied.flatMap((a, i) => a.afterCommit.map((effect) => ({ effect, input: inputs[i]! }))),
          ({ effect, input }) =>
            effect.pipe(
              Effect.catchAllCause((cause) =>
                Effect.logWarning(
                  `after commit of ${input.envelope.type} to ${input.kind.name}/${input.id} failed`,
                  cause
                )
              )
            ),
          { discard: true }
        )
      ),
      Effect.map((applied) => applied.map((a) => a.result))
    )

  /**
   * Apply one command: inbox claim, load, handle, save, outbox, timers and the fence check, all or none.
   * `Duplicate` when the message id was already processed; `Fenced` (nothing written) when the shard's epoch is no
   * longer ours.
   */
  const commit = (input: CommandInput) => commitGroup([input]).pipe(Effect.map((results) => results[0]!))

  /** Record a poison message with its reason and a `actor.dead-lettered` event, exactly once. */
  const deadLetter = (letter: DeadLetter) =>
    Effect.gen(function* () {
      const inboxKey = letter.messageId ?? `seq_${letter.streamSequence}`
      const fresh = yield* claimInbox(inboxKey, letter.kind, letter.entityId ?? "")
      if (!fresh) return false
      yield* sql`
        INSERT INTO actor_dead_letters (kind, entity_id, message_id, subject, stream_seq, reason, detail, payload)
        VALUES (${letter.kind}, ${letter.entityId}, ${letter.messageId}, ${letter.subject}, ${letter.streamSequence},
          ${letter.reason}, ${letter.detail.slice(0, 4000)}, ${letter.payload})`
      const event = ActorMessages.DeadLettered.make({
        kind: letter.kind,
        entityId: letter.entityId,
        messageId: letter.messageId,
        subject: letter.subject,
        streamSequence: letter.streamSequence,
        reason: letter.reason,
        detail: letter.detail.slice(0, 4000)
      })
      const rows = [rowOf(systemEvent(letter.kind, letter.entityId, event))]
      yield* writeOutboxAndCheckFence(
        [sql`written AS (${outboxStatement(rows)})`],
        letter.kind,
        letter.shard,
        letter.epoch
      )
      return rows
    }).pipe(
      sql.withTransaction,
      Effect.map((rows) => {
        if (rows === false) return false
        onCommitted(rows)
        return true
      })
    )

  const readFence = (kind: string, shard: number) =>
    sql<{ epoch: string }>`SELECT epoch FROM actor_shard_fences WHERE kind = ${kind} AND shard = ${shard}`.pipe(
      Effect.map((rows) => (rows[0] === undefined ? 0 : Number(rows[0].epoch)))
    )

  /** Raise the shard's fence to `epoch`; false when it is already there or beyond (someone newer). */
  const writeFence = (kind: string, shard: number, epoch: number, owner: string, lockTimeoutMs: number) =>
    Effect.gen(function* () {
      yield* sql`SELECT set_config('lock_timeout', ${String(lockTimeoutMs)}, true)`
      const rows = yield* sql<{ epoch: string }>`
        INSERT INTO actor_shard_fences (kind, shard, epoch, owner) VALUES (${kind}, ${shard}, ${epoch}, ${owner})
        ON CONFLICT (kind, shard) DO UPDATE SET epoch = EXCLUDED.epoch, owner = EXCLUDED.owner, updated_at = now()
        WHERE actor_shard_fences.epoch < EXCLUDED.epoch
        RETURNING epoch`
      return rows.length > 0
    }).pipe(sql.withTransaction)

  /**
   * Claim up to `limit` rows with SKIP LOCKED, hand them to `publish`, and finish them in the same transaction.
   * That transaction's commit does not wait for the disk (ADR 0034): should a crash lose it, its rows are
   * published again, and a repeat is dropped by JetStream (`Nats-Msg-Id`) or by the receiving actor's inbox
   * and the feed's `seq`, as for a relay that died between its publish and its commit.
   * A poll that finds nothing `due` (nearly all of them: every 500 ms, in each instance) costs that one statement,
   * not a transaction of three.
   */
  const drain = (
    due: Effect.Effect<ReadonlyArray<{ readonly due: boolean }>, unknown>,
    claim: (limit: number) => Effect.Effect<ReadonlyArray<ClaimedRow>, unknown>,
    finish: (rows: ReadonlyArray<ClaimedRow>) => Effect.Effect<unknown, unknown>,
    limit: number,
    publish: (rows: ReadonlyArray<ClaimedRow>) => Effect.Effect<void, unknown>
  ) =>
    Effect.flatMap(due, (found) =>
      found[0]?.due !== true
        ? Effect.succeed(0)
        : Effect.gen(function* () {
            const rows = yield* claim(limit)
            if (rows.length === 0) return 0
            yield* publish(rows)
            yield* sql`SELECT set_config('synchronous_commit', 'off', true)`
            yield* finish(rows)
            return rows.length
          }).pipe(sql.withTransaction)
    )

  // The rows no commit published itself within the grace (its publish failed, its process went): one relay at
  // a time per database (a transaction-scoped advisory lock, freed if its holder dies) publishes them in the
  // order they were written; another instance's relay takes over on its next poll.
  const relayOutbox = (limit: number, publish: (rows: ReadonlyArray<ClaimedRow>) => Effect.Effect<void, unknown>) =>
    drain(
      sql<{ due: boolean }>`
        SELECT EXISTS (SELECT 1 FROM actor_outbox
          WHERE sent_at IS NULL AND created_at < now() - make_interval(secs => ${DIRECT_PUBLISH_GRACE_MS / 1000})) AS due`,
      (n) => sql<ClaimedRow>`
        SELECT message_id AS "messageId", subject, payload, traceparent FROM actor_outbox
        WHERE sent_at IS NULL AND created_at < now() - make_interval(secs => ${DIRECT_PUBLISH_GRACE_MS / 1000})
          AND pg_try_advisory_xact_lock(${OUTBOX_LOCK})
        ORDER BY seq LIMIT ${n} FOR UPDATE SKIP LOCKED`,
      (rows) =>
        sql`UPDATE actor_outbox SET sent_at = now() WHERE message_id IN ${sql.in(rows.map((row) => row.messageId))}`,
      limit,
      publish
    )

  /**
   * Mark rows their commit published as sent (one statement; its commit need not wait for the disk: a mark
   * lost in a crash has the relay publish the row again, which JetStream drops as a repeat). The ids go as one
   * array parameter, so the statement's text is the same whatever their count: it is prepared once (ADR 0033),
   * where an `IN` list would be a new text for every count seen.
   */
  const markSent = (messageIds: ReadonlyArray<string>) =>
    sql`
      UPDATE actor_outbox SET sent_at = now()
      WHERE message_id = ANY(${[...messageIds]}::text[]) AND sent_at IS NULL
        AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL`

  const fireTimers = (limit: number, publish: (rows: ReadonlyArray<ClaimedRow>) => Effect.Effect<void, unknown>) =>
    drain(
      sql<{ due: boolean }>`SELECT EXISTS (SELECT 1 FROM actor_timers WHERE due_at <= now()) AS due`,
      (n) => sql<ClaimedRow>`
        SELECT message_id AS "messageId", subject, payload FROM actor_timers
        WHERE due_at <= now() ORDER BY due_at LIMIT ${n} FOR UPDATE SKIP LOCKED`,
      (rows) => sql`DELETE FROM actor_timers WHERE message_id IN ${sql.in(rows.map((row) => row.messageId))}`,
      limit,
      publish
    )

  /** Whether Postgres answers now: a command that failed while it did not is not the command's fault. */
  /**
   * Of the `limit` oldest outbox rows, delete those published before `olderThanMs` ago; the number
   * deleted. Rows not yet published are never touched. Only the oldest rows are read (rows are
   * published in order), so a call costs the same however many recent rows the table holds. Without
   * this every event ever published stays a row.
   */
  const pruneOutbox = (olderThanMs: number, limit: number) =>
    sql<{ seq: string }>`
      DELETE FROM actor_outbox WHERE seq IN (
        SELECT seq FROM (SELECT seq, sent_at FROM actor_outbox ORDER BY seq LIMIT ${limit}) AS oldest
        WHERE sent_at IS NOT NULL AND sent_at < now() - make_interval(secs => ${olderThanMs / 1000}))
      RETURNING seq`.pipe(Effect.map((rows) => rows.length))

  /**
   * Delete up to `limit` inbox rows of commands handled more than `olderThanMs` ago; the number deleted.
   * The rows are found by their time (a BRIN index: the table is written in time order, and the index
   * costs the hot path's inserts next to nothing).
   */
  const pruneInbox = (olderThanMs: number, limit: number) =>
    sql<{ n: number }>`
      WITH gone AS (
        DELETE FROM actor_inbox WHERE ctid = ANY(ARRAY(
          SELECT ctid FROM actor_inbox
          WHERE processed_at < now() - make_interval(secs => ${olderThanMs / 1000}) LIMIT ${limit}))
        RETURNING 1)
      SELECT count(*)::int AS n FROM gone`.pipe(Effect.map((rows) => rows[0]?.n ?? 0))

  const reachable = sql`SELECT 1`.pipe(
    Effect.timeout("1 second"),
    Effect.match({ onFailure: () => false, onSuccess: () => true })
  )

  return {
    commit,
    commitGroup,
    deadLetter,
    readFence,
    writeFence,
    relayOutbox,
    markSent,
    fireTimers,
    pruneOutbox,
    pruneInbox,
    reachable
  }
}

export type Store = ReturnType<typeof makeStore>
