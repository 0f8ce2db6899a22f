import type { JsMsg } from "@nats-io/jetstream"
import { ActorMessages, Actors, type Envelope, encode, type Nats, Subjects, Trace } from "@sam/bus"
import { Cause, Deferred, Effect, Exit, Fiber, FiberId, Option } from "effect"
import type { AnyActorKind } from "../ActorKind.js"
import { consumerName, jsError, STREAM } from "./Consumer.js"
import { afterFailure, totalAttempts } from "./Retry.js"
import type { RuntimeEvent, ShardSettings } from "./Settings.js"
import type { CommitResult, Store } from "./Store.js"
import { text } from "./Store.js"

export const REPLY_HEADER = Actors.REPLY_HEADER

/** Transactions of one shard's batches that may run at the same time. */
const COMMIT_LANES = 2
/**
 * How long a lane's batch may take before another lane starts one beside it with what became ready meanwhile.
 * Until then that waits for the batch to end and goes in the next, a larger one: a burst's commands share fewer
 * statements (issue 12; at once, a second lane split every burst into twice as many batches of half the size).
 * A slow batch (a handler that waits, a lock) still holds up the rest of the shard for no longer than this.
 */
const SECOND_LANE_AFTER_MS = 20
/** Most entities' groups in one batch (each holds up to `groupMax` commands). */
const BATCH_GROUPS = 64

export interface ShardHandle {
  readonly kind: string
  readonly shard: number
  readonly epoch: number
  readonly isActive: () => boolean
  /** pending messages in this shard's mailboxes */
  readonly depth: () => number
  readonly mailboxes: () => number
  /** stop pulling; graceful waits (bounded) for the mailboxes to empty, otherwise drops what is queued */
  readonly stop: (graceful: boolean) => Effect.Effect<void>
}

export interface ShardDeps {
  readonly nats: Nats["Type"]
  readonly store: Store
  readonly kind: AnyActorKind
  readonly shard: number
  readonly epoch: number
  readonly settings: ShardSettings
  readonly fork: <A, E>(effect: Effect.Effect<A, E>) => Fiber.RuntimeFiber<A, E>
  readonly emit: (event: RuntimeEvent) => void
  /** the fence refused a commit: the lease is gone */
  readonly onFenced: () => void
}

const describe = (error: unknown): string =>
  error instanceof Error
    ? `${error.name}: ${error.message}`
    : typeof error === "object" && error !== null
      ? JSON.stringify(error).slice(0, 2000)
      : String(error)

const entityOf = (subject: string) => subject.slice(subject.lastIndexOf(".") + 1)

/**
 * Start consuming one shard: one fiber pulls and queues each message for its entity; the shard's lanes apply
 * the entities' waiting messages in order, those of many entities in one transaction (group commit).
 */
export const startShard = (deps: ShardDeps) =>
  Effect.gen(function* () {
    const { kind, shard, epoch, settings, store, nats } = deps
    let active = true
    /**
     * Messages taken from the consumer and not yet handled, with when their ack deadline was last pushed
     * back. A burst the database cannot keep up with waits in the entities' queues for longer than `ack_wait`;
     * without `working()` the server would deliver each again, and every copy costs a transaction (an
     * inbox duplicate) while the backlog grows: a slow database would get slower still.
     */
    const held = new Map<JsMsg, number>()

    const reply = (msg: JsMsg, messageId: string, outcome: ActorMessages.AskOutcome, value?: unknown) =>
      Effect.suspend(() => {
        const to = msg.headers?.get(REPLY_HEADER)
        // Answers go to an inbox and nowhere else: a header naming `$JS.API.…` or `$KV.…` is ignored
        // (only the control plane's own processes can send commands; ADR 0016).
        if (to === undefined || !to.startsWith("_INBOX.")) return Effect.void
        const envelope = ActorMessages.AskReply.make({ messageId, outcome, reply: value })
        // An answer that cannot go (a subject the client refuses, a connection closing) is the asker's
        // loss alone: the command is applied, and the lane that answers goes on.
        return Effect.try(() => nats.nc.publish(to, encode(envelope))).pipe(
          Effect.catchAll((error) =>
            Effect.logWarning(`actor ${kind.name}: could not answer ${messageId}`, error.cause)
          )
        )
      })

    const ack = (msg: JsMsg) =>
      Effect.sync(() => {
        if (settings.withholdAck?.(msg.seq, msg.info.deliveryCount) !== true) msg.ack()
      })

    /** A committed command answered: acknowledged, its asker replied to, and `onApplied` told how it went. */
    const answer = (msg: JsMsg, id: string, envelope: Envelope, result: CommitResult, startedAt: number) =>
      Effect.gen(function* () {
        yield* ack(msg)
        const outcome = result._tag === "Applied" ? "applied" : "duplicate"
        yield* reply(msg, envelope.id, outcome, result._tag === "Applied" ? result.reply : undefined)
        settings.onApplied?.({
          kind: kind.name,
          id,
          envelope,
          outcome,
          startedAt,
          at: Date.now(),
          ...(result.committedIn === undefined ? {} : { committedIn: result.committedIn })
        })
      })

    const deadLetter = (
      msg: JsMsg,
      entityId: string | null,
      messageId: string | null,
      reason: ActorMessages.DeadLetterReason,
      detail: string
    ) =>
      store
        .deadLetter({
          kind: kind.name,
          shard,
          epoch,
          entityId,
          messageId,
          subject: msg.subject,
          streamSequence: msg.seq,
          reason,
          detail,
          payload: text(msg.data)
        })
        .pipe(
          Effect.tap(() =>
            Effect.sync(() => deps.emit({ _tag: "DeadLettered", kind: kind.name, shard, reason, detail }))
          ),
          Effect.zipRight(messageId === null ? Effect.void : reply(msg, messageId, "dead-lettered")),
          Effect.zipRight(ack(msg)),
          Effect.catchTag("Fenced", () => Effect.sync(() => lose())),
          Effect.catchAllCause((cause) =>
            Effect.logWarning(`dead-lettering ${msg.subject}#${msg.seq} failed; retrying`, Cause.pretty(cause)).pipe(
              Effect.zipRight(Effect.sleep(settings.retryBaseMs * 4)),
              Effect.as(false)
            )
          ),
          Effect.repeat({ while: (done) => done === false && active }),
          Effect.asVoid
        )

    const lose = () => {
      if (!active) return
      active = false
      deps.emit({ _tag: "Fenced", kind: kind.name, shard, epoch })
      deps.onFenced()
    }

    const handleCommand = (msg: JsMsg, id: string, envelope: Envelope) =>
      Effect.gen(function* () {
        let attempt = 0
        let waits = 0
        while (active) {
          attempt++
          const total = totalAttempts(msg.info.deliveryCount, attempt)
          if (attempt > 1) msg.working()
          const started = Date.now()
          const exit = yield* store
            .commit({
              kind,
              shard,
              epoch,
              id,
              envelope,
              context: { kind: kind.name, id, subject: msg.subject, streamSequence: msg.seq, attempt: total },
              traceparent: msg.headers?.get("traceparent")
            })
            .pipe(
              Trace.span("Actor.handle", () => ({
                captureStackTrace: false,
                attributes: {
                  "actor.kind": kind.name,
                  "actor.id": id,
                  "actor.shard": shard,
                  "message.type": envelope.type,
                  "message.id": envelope.id,
                  subject: msg.subject,
                  streamSequence: msg.seq,
                  attempt: total
                }
              })),
              Effect.exit
            )
          if (Exit.isSuccess(exit)) {
            yield* answer(msg, id, envelope, exit.value, started)
            return
          }
          const failure = Cause.failureOption(exit.cause)
          const next = afterFailure({
            fenced: Option.isSome(failure) && failure.value._tag === "Fenced",
            attempt,
            deliveryCount: msg.info.deliveryCount,
            maxAttempts: settings.maxAttempts,
            retryBaseMs: settings.retryBaseMs
          })
          if (next._tag === "GiveUpShard") {
            deps.emit({ _tag: "CommitRefused", kind: kind.name, shard, epoch, id, messageId: envelope.id })
            return lose()
          }
          // Postgres down (restarting): wait for it without spending the command's attempts, so an
          // outage of a few seconds dead-letters nothing (ADR 0020).
          if (!(yield* store.reachable)) {
            if (waits++ % 10 === 0) {
              yield* Effect.logWarning(
                `actor ${kind.name}/${id}: the database is unavailable; retrying ${envelope.type}`
              )
            }
            attempt -= 1
            msg.working()
            yield* Effect.sleep(1_000)
            continue
          }
          if (next._tag === "DeadLetter") {
            const detail = Option.match(failure, {
              onSome: (error) => (error._tag === "HandlerFailed" ? describe(error.cause) : describe(error)),
              onNone: () => Cause.pretty(exit.cause)
            })
            return yield* deadLetter(msg, id, envelope.id, "handler-failed", detail)
          }
          yield* Effect.logDebug(`actor ${kind.name}/${id} failed on ${envelope.type} (attempt ${total})`)
          yield* Effect.sleep(next.delayMs)
        }
      })

    type Checked = { readonly msg: JsMsg; readonly id: string; readonly envelope: Envelope }
    /** A message's id, payload and shard checked once: the command to apply, or its dead letter. */
    const check = (msg: JsMsg): Checked | Effect.Effect<void> => {
      const rawId = entityOf(msg.subject)
      const parsedId = kind.parseId(rawId)
      if (!parsedId.ok) return deadLetter(msg, null, null, "bad-id", `${rawId}: ${parsedId.message}`)
      const decoded = kind.decode(msg.data)
      if (decoded._tag === "Malformed") {
        return deadLetter(msg, parsedId.id, null, decoded.malformed.reason, decoded.malformed.message)
      }
      // A sender that disagrees with the kind's shard count puts an entity's commands on a shard that may
      // be held by another instance than its own one: applying them would break one-at-a-time per entity.
      const home = Subjects.shardOf(parsedId.id, kind.shards)
      if (home !== shard) {
        const detail = `${parsedId.id} belongs to shard ${home} of ${kind.shards}, not ${shard}`
        return deadLetter(msg, parsedId.id, decoded.envelope.id, "wrong-shard", detail)
      }
      return { msg, id: parsedId.id, envelope: decoded.envelope }
    }

    /**
     * The shard's scheduler (group commit, issue 12). An entity's messages wait in its queue, in arrival
     * order; an entity with messages that has no group in a transaction is `ready`. A lane takes up to
     * `BATCH_GROUPS` ready entities, up to `groupMax` messages of each, and commits them in one transaction
     * (one BEGIN, fence check and COMMIT); `COMMIT_LANES` lanes of a shard run side by side, so one slow
     * transaction does not hold up the rest. An entity is in one lane's batch at a time, so its order holds.
     * Should a batch fail for another reason than the fence, each entity's messages are applied on their own,
     * with their own retries, while the lanes go on with other entities. An entity with nothing waiting and
     * nothing in a transaction is dropped at once (passivation: it holds no state but its queue).
     */
    interface Entity {
      readonly id: string
      /** checked messages, or a bad one's dead letter, in arrival order */
      readonly waiting: Array<Checked | { readonly msg: JsMsg; readonly bad: Effect.Effect<void> }>
      /** in a lane's batch, or being applied on its own */
      busy: boolean
      /** the puller waits on this while the entity holds `mailboxCapacity` messages */
      room: Deferred.Deferred<void> | undefined
    }
    const entities = new Map<string, Entity>()
    const ready: Array<Entity> = []
    const work = Effect.runSync(Effect.makeLatch(false))

    /** An entity's batch is over: ready again if more waits, otherwise dropped. */
    const release = (entity: Entity) => {
      entity.busy = false
      if (!active) return
      if (entity.waiting.length > 0) {
        ready.push(entity)
        work.unsafeOpen()
      } else entities.delete(entity.id)
    }
    const finished = (msg: JsMsg) => held.delete(msg)
    const takeGroup = (entity: Entity): Array<Checked> => {
      const group: Array<Checked> = []
      while (group.length < settings.groupMax && entity.waiting.length > 0) {
        const next = entity.waiting[0]!
        if ("bad" in next) break
        group.push(next)
        entity.waiting.shift()
      }
      if (entity.room !== undefined && entity.waiting.length < settings.mailboxCapacity) {
        Deferred.unsafeDone(entity.room, Exit.void)
        entity.room = undefined
      }
      return group
    }
    /** Dead-letter the bad messages at the front of an entity's queue, in their place in its order. */
    const badsFirst = (entity: Entity) =>
      Effect.gen(function* () {
        while (active && entity.waiting.length > 0) {
          const next = entity.waiting[0]!
          if (!("bad" in next)) return
          entity.waiting.shift()
          yield* next.bad
          finished(next.msg)
        }
      })
    /** A group the batch could not commit: each message on its own, with its own retries. */
    const oneByOne = (entity: Entity, group: ReadonlyArray<Checked>) =>
      Effect.gen(function* () {
        for (const { msg, id, envelope } of group) {
          if (!active) return
          yield* handleCommand(msg, id, envelope)
          finished(msg)
        }
      }).pipe(Effect.ensuring(Effect.sync(() => release(entity))))

    const inputOf = ({ msg, id, envelope }: Checked) => ({
      kind,
      shard,
      epoch,
      id,
      envelope,
      context: {
        kind: kind.name,
        id,
        subject: msg.subject,
        streamSequence: msg.seq,
        attempt: totalAttempts(msg.info.deliveryCount, 1)
      },
      traceparent: msg.headers?.get("traceparent")
    })

    interface LaneState {
      busy: boolean
      /** when its batch began */
      since: number
      /** done when its batch ends */
      done: Deferred.Deferred<void>
    }
    const laneStates: Array<LaneState> = []
    const lane = (state: LaneState) =>
      Effect.gen(function* () {
        while (active) {
          if (ready.length === 0) {
            work.unsafeClose()
            yield* work.await
            continue
          }
          // the other lane's batch in flight and not slow yet: what is ready goes in a batch after it
          const other = laneStates.find((l) => l !== state && l.busy)
          const wait = other === undefined ? 0 : other.since + SECOND_LANE_AFTER_MS - Date.now()
          if (other !== undefined && wait > 0) {
            yield* Effect.race(Deferred.await(other.done), Effect.sleep(wait))
            continue
          }
          state.busy = true
          state.since = Date.now()
          state.done = Deferred.unsafeMake<void>(FiberId.none)
          yield* takeAndCommit.pipe(
            // A bug here would leave the batch's entities taken for ever, their commands held and never applied.
            // The shard is given up instead: its lease goes, the next owner (this instance, most likely) gets a new
            // consumer, and what was not acknowledged comes again (what was committed is then a repeat).
            Effect.catchAllDefect((defect) =>
              Effect.logError(
                `shard ${kind.name}/${shard}: a lane failed (${describe(defect)}); giving the shard up`
              ).pipe(Effect.zipRight(Effect.sync(lose)))
            )
          )
          state.busy = false
          Deferred.unsafeDone(state.done, Exit.void)
        }
      })

    const takeAndCommit = Effect.gen(function* () {
      const picked = ready.splice(0, BATCH_GROUPS)
      const groups: Array<{ readonly entity: Entity; readonly items: Array<Checked> }> = []
      for (const entity of picked) {
        entity.busy = true
        if ("bad" in entity.waiting[0]!) yield* badsFirst(entity)
        const items = takeGroup(entity)
        if (items.length > 0) groups.push({ entity, items })
        else release(entity)
      }
      if (groups.length > 0 && active) yield* commitBatch(groups)
      else for (const { entity } of groups) release(entity)
    })

    const commitBatch = (groups: ReadonlyArray<{ readonly entity: Entity; readonly items: Array<Checked> }>) =>
      Effect.gen(function* () {
        const inputs = groups.flatMap((group) => group.items.map(inputOf))
        const started = Date.now()
        const exit = yield* store.commitGroup(inputs).pipe(
          // a batch of many requests' commands: a trace of its own (each command's `Actor.apply` follows its own)
          Trace.span("Actor.handleGroup", () => ({
            captureStackTrace: false,
            root: true,
            attributes: {
              "actor.kind": kind.name,
              "actor.shard": shard,
              "group.size": inputs.length,
              "group.entities": groups.length
            }
          })),
          Effect.exit
        )
        if (Exit.isSuccess(exit)) {
          let i = 0
          for (const { items } of groups) {
            for (const { msg, id, envelope } of items) {
              yield* answer(msg, id, envelope, exit.value[i++]!, started)
              finished(msg)
            }
          }
          // released once all are answered: what waits of them goes in one next batch, not in one per entity that
          // a lane took while the answers went on (a fiber yields to others every few thousand steps)
          for (const { entity } of groups) release(entity)
          return
        }
        const failed = Option.getOrUndefined(Cause.failureOption(exit.cause))
        if (failed?._tag === "Fenced") {
          for (const { entity, items } of groups) {
            for (const { msg, id, envelope } of items) {
              deps.emit({ _tag: "CommitRefused", kind: kind.name, shard, epoch, id, messageId: envelope.id })
              finished(msg)
            }
            release(entity)
          }
          return lose()
        }
        for (const { entity, items } of groups) deps.fork(oneByOne(entity, items))
      })

    const lanes = Array.from({ length: COMMIT_LANES }, () => {
      const state: LaneState = { busy: false, since: 0, done: Deferred.unsafeMake<void>(FiberId.none) }
      laneStates.push(state)
      return { state, fiber: deps.fork(lane(state)) }
    })

    const dispatch = (msg: JsMsg) =>
      Effect.suspend(() => {
        if (!active) return Effect.void
        const id = entityOf(msg.subject)
        let entity = entities.get(id)
        if (entity === undefined) {
          entity = { id, waiting: [], busy: false, room: undefined }
          entities.set(id, entity)
        }
        held.set(msg, Date.now())
        const checked = check(msg)
        entity.waiting.push(Effect.isEffect(checked) ? { msg, bad: checked } : checked)
        if (!entity.busy && entity.waiting.length === 1) {
          ready.push(entity)
          work.unsafeOpen()
        }
        // A full queue suspends the puller: nothing more is pulled until this entity catches up.
        if (entity.waiting.length < settings.mailboxCapacity) return Effect.void
        const room = entity.room ?? Deferred.unsafeMake<void>(FiberId.none)
        entity.room = room
        return Deferred.await(room)
      })

    const pull = Effect.gen(function* () {
      const consumer = yield* Effect.tryPromise({
        try: () => nats.js.consumers.get(STREAM, consumerName(kind.name, shard, epoch)),
        catch: jsError(`open consumer ${kind.name}/${shard}`)
      })
      const messages = yield* Effect.acquireRelease(
        Effect.tryPromise({
          try: () => consumer.consume({ max_messages: settings.batch }),
          catch: jsError(`consume ${kind.name}/${shard}`)
        }),
        // close() resolves only once the iteration loop has seen the end, which an interrupted
        // stream never does: stop the subscription without waiting for that.
        (iterator) => Effect.sync(() => void iterator.close().catch(() => undefined))
      )
      // Not Stream.fromAsyncIterable: its finalizer awaits the iterator's return(), which never
      // settles for an interrupted consume().
      const iterator = messages[Symbol.asyncIterator]()
      const next = Effect.tryPromise({
        try: () => iterator.next(),
        catch: jsError(`consume ${kind.name}/${shard}`)
      })
      while (true) {
        const result = yield* next
        if (result.done === true) return
        yield* dispatch(result.value)
      }
    }).pipe(
      Effect.scoped,
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause)
          ? Effect.void
          : Effect.logWarning(`shard ${kind.name}/${shard} stopped pulling`, Cause.pretty(cause))
      )
    )
    const puller = deps.fork(pull)
    const extendEveryMs = Math.max(50, Math.floor(settings.ackWaitMs / 3))
    const extender = deps.fork(
      Effect.gen(function* () {
        while (true) {
          yield* Effect.sleep(extendEveryMs)
          if (!active) continue // not ours any more: the next owner's consumer has them
          const now = Date.now()
          for (const [msg, since] of held) {
            if (now - since < extendEveryMs) continue
            msg.working()
            held.set(msg, now)
          }
        }
      })
    )

    const depth = () => {
      let sum = 0
      for (const entity of entities.values()) sum += entity.waiting.length
      return sum
    }
    const idle = () => entities.size === 0

    const stop = (graceful: boolean) =>
      Effect.gen(function* () {
        yield* Fiber.interrupt(puller)
        yield* Fiber.interrupt(extender)
        if (graceful && active) {
          const deadline = Date.now() + settings.drainTimeoutMs
          while (!idle() && Date.now() < deadline) yield* Effect.sleep(10)
        }
        active = false
        held.clear()
        // What waits is left unacknowledged for the next owner. A lane in the middle of a batch carries it
        // through (the fence decides); idle ones stop.
        entities.clear()
        ready.length = 0
        yield* Fiber.interruptAll(lanes.filter((l) => !l.state.busy).map((l) => l.fiber))
      })

    return {
      kind: kind.name,
      shard,
      epoch,
      isActive: () => active,
      depth,
      mailboxes: () => entities.size,
      stop
    } satisfies ShardHandle
  })
