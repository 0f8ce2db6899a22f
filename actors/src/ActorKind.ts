import type { SqlClient, Statement } from "@effect/sql"
import type { Envelope, EnvelopeOf, MessageDef } from "@sam/bus"
import { registry, Subjects } from "@sam/bus"
import { Duration, type Effect } from "effect"
import type { z } from "zod"

/** A message leaving an actor through the outbox: published after commit with `Nats-Msg-Id` = envelope id. */
export interface Outgoing {
  readonly subject: string
  readonly envelope: Envelope
  /**
   * The W3C trace context the message continues. A handler sets it only for what it answers late, from what it kept
   * of the request (a node's reservation for a task that waited for the node); the runtime gives every other message
   * its handler's span.
   */
  readonly traceparent?: string | undefined
}

/** Set (or replace) the actor's timer `name`, or cancel it. A due timer delivers `command` to the actor. */
export type TimerInstruction =
  | { readonly _tag: "Set"; readonly name: string; readonly at: Date; readonly command: Envelope }
  | { readonly _tag: "Cancel"; readonly name: string }

/** What a handler decided: the new state and everything that must happen if (and only if) it commits. */
export interface Reaction<S> {
  readonly state: S
  readonly events?: ReadonlyArray<Outgoing>
  readonly send?: ReadonlyArray<Outgoing>
  readonly timers?: ReadonlyArray<TimerInstruction>
  /** returned to an `ask`er after commit */
  readonly reply?: unknown
  /**
   * Side effects outside Postgres (a KV snapshot), run after COMMIT and before the ack, never for a
   * command that is fenced or rolled back; a crash between the commit and these skips them, so what
   * they write must be a view the ledger can be recovered from, never ahead of it.
   */
  readonly afterCommit?: ReadonlyArray<Effect.Effect<void, unknown>>
}

export interface ActorContext<Id extends string> {
  readonly kind: string
  readonly id: Id
  readonly subject: string
  readonly streamSequence: number
  /** the delivery attempt, counting local retries and server redeliveries, from 1 */
  readonly attempt: number
  /**
   * the transaction applying it: commands of one group commit share it (issue 12), so what a handler
   * stages for after the commit stays visible to the commands after it in the same transaction
   */
  readonly transaction?: string
  /** when that transaction began (ISO 8601): one time for what its commands record, as Postgres's `now()` is */
  readonly transactionAt?: string
  /**
   * The W3C trace context the command's handling continues, for what a handler keeps to send later (a node's
   * reservation): its `Actor.apply` span's when spans are exported, else the one the command came with (ADR 0029).
   */
  readonly traceparent?: string
  /**
   * For a handler that claims message ids of its own in the inbox (a session's run of reports claims each report's
   * id): whether a command later in the same group commit, to the same entity and of `type`, carries `messageId`.
   * The group claimed that command's inbox row before any of them was handled, so the handler's claim finds it taken
   * though nothing applied it yet. True: the handler takes it over (applies it now, in its place) and that later
   * command becomes a repeat. Nothing else can be taken over: a run's report ids are its node's, and a node must not
   * turn another command into a repeat by naming a report after it. Absent outside a group.
   */
  readonly takeOver?: (messageId: string, type: string) => boolean
  /**
   * The ids this command carries (its kind's `carriedIds`) that its transaction claimed in the inbox (new to it),
   * for a command that carries any. An id a command of the same group carries as its own is that command's, not this.
   */
  readonly claimed?: ReadonlySet<string>
}

type AnyDef = MessageDef<string, z.ZodType>

export interface ActorKindSpec<Defs extends ReadonlyArray<AnyDef>, IdS extends z.ZodType<string>, S> {
  /** the `<kind>` token of `sam.cmd.<kind>.<shard>.<id>` */
  readonly name: string
  /** fixed for the life of the kind: changing it moves entities to other shards */
  readonly shards?: number
  readonly id: IdS
  readonly commands: Defs
  /**
   * read the entity's state inside the command's transaction (or, for a kind that commits in one statement, before
   * it: `commitsInOneStatement`); the command is there for reads that depend on what it names (a new task's
   * submitter, whose nodes it may be placed on)
   */
  readonly load: (
    id: z.output<IdS>,
    command: EnvelopeOf<Defs[number]>
  ) => Effect.Effect<S, unknown, SqlClient.SqlClient>
  /** write the new state in the same transaction (skip when unchanged) */
  readonly save: (id: z.output<IdS>, state: S, previous: S) => Effect.Effect<void, unknown, SqlClient.SqlClient>
  /**
   * Group commit in fewer statements (issue 12): the states of several entities read at once, for the first
   * command of each in a transaction, instead of a `load` each. Only for a kind whose `load` reads nothing
   * that another entity's `save` writes (a transaction may hold many of its entities, and their saves wait,
   * see `saveMany`). An entity missing from the map is loaded on its own.
   */
  readonly loadMany?: (
    entries: ReadonlyArray<{ readonly id: z.output<IdS>; readonly command: EnvelopeOf<Defs[number]> }>
  ) => Effect.Effect<ReadonlyMap<string, S>, unknown, SqlClient.SqlClient>
  /**
   * What the `save` of each of these commands would write, in their order (an entity may come more than
   * once), in as few statements as the kind can. With it the runtime holds a transaction's saves and writes
   * them together before its fence check, or before a `load` that follows them; the states of an entity's
   * later commands then come from `carry` (or a load after that write). Each save comes with the correlation id
   * of its command (what `save` finds in `Trace.correlation`). It may write them itself, or return the statements
   * that write them (each one data-modifying statement with no WITH of its own), for the runtime to run: at the
   * transaction's end in the WITH of its last statement, with the outbox rows and the fence check (one round trip
   * less per transaction, issue 12), or in one statement of their own before a `load` that follows them.
   */
  readonly saveMany?: (
    entries: ReadonlyArray<HeldSave<z.output<IdS>, S>>
  ) => Effect.Effect<SaveStatements, unknown, SqlClient.SqlClient>
  /**
   * What a transaction's commands send (their events and commands, in order) as it goes to the outbox: a kind
   * may join messages of several commands into one (issue 12), keeping the order of those that go to one
   * subject. Without it each goes as it was made.
   */
  readonly batchOutgoing?: (outgoing: ReadonlyArray<Outgoing>) => ReadonlyArray<Outgoing>
  /**
   * For a command that follows another of the same entity in one transaction (group commit): the state it
   * starts from, made from the one the command before saved (what only that save needed cleared), instead of
   * loading it again; `undefined` to load. Without it every command loads.
   */
  readonly carry?: (state: S, command: EnvelopeOf<Defs[number]>) => S | undefined
  /**
   * What of an entity's state as this process last committed it a later group of that entity may start from,
   * instead of loading it again (issue 12: on the live path that load was a statement per event). `remember` takes
   * what to keep of a committed state (`undefined`: nothing; it is held in memory, so keep it small); `reuse` makes
   * from it the state a command starts from, or `undefined` to load (a command that needs what the state holds of
   * other kinds' rows, which this process does not see change). What is kept holds only while the shard is at the
   * epoch it was committed at (no other owner can have written the entity since: the fence), and a group that does
   * not commit forgets its entities. Without it every group loads.
   */
  readonly keep?: {
    readonly remember: (state: S) => S | undefined
    readonly reuse: (state: S, command: EnvelopeOf<Defs[number]>) => S | undefined
  }
  /**
   * Message ids a command carries besides its own that the inbox keeps (a session's run of reports carries each
   * report's), claimed with the ids of the group's commands in one statement (issue 12: a statement per run
   * otherwise). What was claimed reaches the handler as `context.claimed`.
   */
  readonly carriedIds?: (
    command: EnvelopeOf<Defs[number]>
  ) => ReadonlyArray<{ readonly id: string; readonly type: string }> | undefined
  /**
   * Commit a group in one statement (ADR 0056): the runtime reads the group's states (`loadMany`, or a `load`
   * each) and handles its commands outside any transaction, then claims their inbox rows, writes their saves,
   * outbox rows and timers and checks the shard's fence in one statement, which commits whole or not at all (a
   * repeat among them has the group run again in a transaction). Only for a kind whose `load`, `loadMany` and
   * `handle` write nothing (they may read), whose `saveMany` returns its statements, and whose `load` reads
   * nothing another entity's save writes.
   */
  readonly commitsInOneStatement?: boolean
  readonly handle: (
    state: S,
    command: EnvelopeOf<Defs[number]>,
    context: ActorContext<z.output<IdS>>
  ) => Effect.Effect<Reaction<S>, unknown>
}

/** What `saveMany` leaves to the runtime to run: nothing (it wrote the saves itself), or the statements that write them. */
// biome-ignore lint/suspicious/noConfusingVoidType: a `saveMany` that writes its saves itself is an Effect<void>
export type SaveStatements = void | ReadonlyArray<Statement.Statement<unknown>>

/** A command's save as `saveMany` gets it. */
export interface HeldSave<Id, S> {
  readonly id: Id
  readonly state: S
  readonly previous: S
  /** the correlation id of the command that made it */
  readonly correlationId: string
}

/**
 * A kind as the runtime sees it (state and command types erased). Method syntax keeps the
 * parameters bivariant so every `ActorKind<…>` is one.
 */
export interface AnyActorKind {
  readonly name: string
  readonly shards: number
  readonly parseId: (
    id: string
  ) => { readonly ok: true; readonly id: string } | { readonly ok: false; readonly message: string }
  readonly decode: (data: Uint8Array) => ReturnType<ReturnType<typeof registry>["decode"]>
  load(id: string, command: Envelope): Effect.Effect<unknown, unknown, SqlClient.SqlClient>
  save(id: string, state: unknown, previous: unknown): Effect.Effect<void, unknown, SqlClient.SqlClient>
  loadMany?(
    entries: ReadonlyArray<{ readonly id: string; readonly command: Envelope }>
  ): Effect.Effect<ReadonlyMap<string, unknown>, unknown, SqlClient.SqlClient>
  saveMany?(
    entries: ReadonlyArray<HeldSave<string, unknown>>
  ): Effect.Effect<SaveStatements, unknown, SqlClient.SqlClient>
  batchOutgoing?(outgoing: ReadonlyArray<Outgoing>): ReadonlyArray<Outgoing>
  carry?(state: unknown, command: Envelope): unknown
  readonly keep?: {
    remember(state: unknown): unknown
    reuse(state: unknown, command: Envelope): unknown
  }
  carriedIds?(command: Envelope): ReadonlyArray<{ readonly id: string; readonly type: string }> | undefined
  readonly commitsInOneStatement?: boolean
  handle(state: unknown, command: Envelope, context: ActorContext<string>): Effect.Effect<Reaction<unknown>, unknown>
}

export interface ActorKind<Defs extends ReadonlyArray<AnyDef>, IdS extends z.ZodType<string>, S> extends AnyActorKind {
  readonly spec: ActorKindSpec<Defs, IdS, S>
}

export const DEFAULT_SHARDS = 16

/** Define an actor kind. Its commands decode with the kind's registry; ids are checked with `id`. */
export const make = <const Defs extends ReadonlyArray<AnyDef>, IdS extends z.ZodType<string>, S>(
  spec: ActorKindSpec<Defs, IdS, S>
): ActorKind<Defs, IdS, S> => {
  Subjects.token(spec.name)
  const commands = registry(...spec.commands)
  return {
    spec,
    name: spec.name,
    shards: spec.shards ?? DEFAULT_SHARDS,
    parseId: (id) => {
      const parsed = spec.id.safeParse(id)
      return parsed.success ? { ok: true, id: parsed.data } : { ok: false, message: parsed.error.message }
    },
    decode: commands.decode,
    load: (id, command) => spec.load(id as z.output<IdS>, command as EnvelopeOf<Defs[number]>),
    save: (id, state, previous) => spec.save(id as z.output<IdS>, state as S, previous as S),
    ...(spec.loadMany === undefined
      ? {}
      : {
          loadMany: (entries: ReadonlyArray<{ readonly id: string; readonly command: Envelope }>) =>
            spec.loadMany!(entries as ReadonlyArray<{ id: z.output<IdS>; command: EnvelopeOf<Defs[number]> }>)
        }),
    ...(spec.saveMany === undefined
      ? {}
      : {
          saveMany: (entries: ReadonlyArray<HeldSave<string, unknown>>) =>
            spec.saveMany!(entries as ReadonlyArray<HeldSave<z.output<IdS>, S>>)
        }),
    ...(spec.batchOutgoing === undefined ? {} : { batchOutgoing: spec.batchOutgoing }),
    ...(spec.commitsInOneStatement === undefined ? {} : { commitsInOneStatement: spec.commitsInOneStatement }),
    ...(spec.carry === undefined
      ? {}
      : {
          carry: (state: unknown, command: Envelope) => spec.carry!(state as S, command as EnvelopeOf<Defs[number]>)
        }),
    ...(spec.keep === undefined
      ? {}
      : {
          keep: {
            remember: (state: unknown) => spec.keep!.remember(state as S),
            reuse: (state: unknown, command: Envelope) =>
              spec.keep!.reuse(state as S, command as EnvelopeOf<Defs[number]>)
          }
        }),
    ...(spec.carriedIds === undefined
      ? {}
      : { carriedIds: (command: Envelope) => spec.carriedIds!(command as EnvelopeOf<Defs[number]>) }),
    handle: (state, command, context) =>
      spec.handle(
        state as S,
        command as EnvelopeOf<Defs[number]>,
        context as ActorContext<z.output<IdS>>
      ) as Effect.Effect<Reaction<unknown>, unknown>
  }
}

/** The subject of a command to `kind/id`. */
export const subjectOf = (kind: Pick<AnyActorKind, "name" | "shards">, id: string) =>
  Subjects.command(kind.name, Subjects.shardOf(id, kind.shards), id)

/** A command to another actor, sent through the outbox. */
export const to = (kind: Pick<AnyActorKind, "name" | "shards">, id: string, envelope: Envelope): Outgoing => ({
  subject: subjectOf(kind, id),
  envelope
})

/** A domain event `sam.evt.<projectId>.<kind>.<id>.<type>`, published through the outbox. */
export const event = (projectId: string, kind: string, id: string, envelope: Envelope): Outgoing => ({
  subject: Subjects.event(projectId, kind, id, envelope.type),
  envelope
})

export const Timer = {
  /** due `after` from now (the handler's clock), or at a given date */
  set: (name: string, when: Duration.DurationInput | Date, command: Envelope): TimerInstruction => ({
    _tag: "Set",
    name,
    at: when instanceof Date ? when : new Date(Date.now() + Duration.toMillis(Duration.decode(when))),
    command
  }),
  cancel: (name: string): TimerInstruction => ({ _tag: "Cancel", name })
}
