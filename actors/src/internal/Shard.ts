import type { JsMsg } from "@nats-io/jetstream"
import { ActorMessages, Actors, type Envelope, encode, type Nats, Subjects } from "@sam/bus"
import { Cause, Deferred, Effect, Exit, Fiber, Option, Queue, Stream } from "effect"
import type { AnyActorKind } from "../ActorKind.js"
import { consumerName, jsError, STREAM } from "./Consumer.js"
import { afterFailure, totalAttempts } from "./Retry.js"
import type { RuntimeEvent, ShardSettings } from "./Settings.js"
import type { CommitResult, Store } from "./Store.js"
import { text } from "./Store.js"

export const REPLY_HEADER = Actors.REPLY_HEADER

/** Transactions of one shard's batches that may run at the same time. */
const COMMIT_LANES = 2
/** Most entities' groups in one batch (each holds up to `groupMax` commands). */
const BATCH_GROUPS = 16

interface Mailbox {
  readonly id: string
  readonly queue: Queue.Queue<JsMsg>
  busy: boolean
  /** when it was last given a message or last finished one: it is passivated `idleAfterMs` after that */
  lastUsed: number
}

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
 * Start consuming one shard: one fiber pulls, one fiber per active entity handles its messages in
 * order, all of those waiting in one transaction (group commit).
 */
export const startShard = (deps: ShardDeps) =>
  Effect.gen(function* () {
    const { kind, shard, epoch, settings, store, nats } = deps
    let active = true
    const boxes = new Map<string, Mailbox>()
    /**
     * Messages taken from the consumer and not yet handled, with when their ack deadline was last pushed
     * back. A burst the database cannot keep up with waits in the mailboxes for longer than `ack_wait`;
     * without `working()` the server would deliver each again, and every copy costs a transaction (an
     * inbox duplicate) while the backlog grows: a slow database would get slower still.
     */
    const held = new Map<JsMsg, number>()

    const reply = (msg: JsMsg, messageId: string, outcome: ActorMessages.AskOutcome, value?: unknown) =>
      Effect.sync(() => {
        const to = msg.headers?.get(REPLY_HEADER)
        // Answers go to an inbox and nowhere else: a header naming `$JS.API.…` or `$KV.…` is ignored
        // (only the control plane's own processes can send commands; ADR 0016).
        if (to === undefined || !to.startsWith("_INBOX.")) return
        const envelope = ActorMessages.AskReply.make({ messageId, outcome, reply: value })
        nats.nc.publish(to, encode(envelope))
      })

    const ack = (msg: JsMsg) =>
      Effect.sync(() => {
        if (settings.withholdAck?.(msg.seq, msg.info.deliveryCount) !== true) msg.ack()
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
              Effect.withSpan("Actor.handle", {
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
              }),
              Effect.exit
            )
          if (Exit.isSuccess(exit)) {
            yield* ack(msg)
            const outcome = exit.value._tag === "Applied" ? "applied" : "duplicate"
            yield* reply(msg, envelope.id, outcome, exit.value._tag === "Applied" ? exit.value.reply : undefined)
            settings.onApplied?.({ kind: kind.name, id, envelope, outcome, startedAt: started, at: Date.now() })
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
     * Groups of different entities that are ready at the same time share a transaction (group commit
     * across the shard's entities, issue 12): a burst over many entities pays one BEGIN, one fence check
     * and one COMMIT per batch, not per command. Each entity has at most one group waiting here (its
     * mailbox waits for the answer), so its order holds; `COMMIT_LANES` batches of a shard run side by
     * side, so one slow transaction does not hold up the rest. Should a batch fail for another reason
     * than the fence, each group is answered `Retry` and applied on its own, with its own retries.
     */
    type Batched = Exit.Exit<ReadonlyArray<CommitResult>, "Fenced" | "Retry" | "Stopped">
    interface Submission {
      readonly items: ReadonlyArray<Checked>
      readonly done: Deferred.Deferred<Batched>
    }
    const submissions = Effect.runSync(Queue.unbounded<Submission>())
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
    const stoppedAll = (batch: ReadonlyArray<Submission>) =>
      Effect.forEach(batch, (submission) => Deferred.succeed(submission.done, Exit.fail("Stopped")), { discard: true })
    /**
     * A lane: takes what waits, commits it, answers each group. Once the shard stops it takes nothing
     * more, but a batch it holds is carried through (the fence then refuses it if the shard is gone).
     */
    const lane = (state: { busy: boolean }) =>
      Effect.gen(function* () {
        while (active) {
          const batch = [...(yield* Queue.takeBetween(submissions, 1, BATCH_GROUPS))]
          state.busy = true
          if (!active) {
            yield* stoppedAll(batch)
            state.busy = false
            return
          }
          // more than one entity's group may wait: take them all, up to BATCH_GROUPS groups
          const inputs = batch.flatMap((submission) => submission.items.map(inputOf))
          const exit = yield* store.commitGroup(inputs).pipe(
            Effect.withSpan("Actor.handleGroup", {
              captureStackTrace: false,
              attributes: {
                "actor.kind": kind.name,
                "actor.shard": shard,
                "group.size": inputs.length,
                "group.entities": batch.length
              }
            }),
            Effect.exit
          )
          let offset = 0
          for (const submission of batch) {
            const size = submission.items.length
            const answer: Batched = Exit.isSuccess(exit)
              ? Exit.succeed(exit.value.slice(offset, offset + size))
              : Option.match(Cause.failureOption(exit.cause), {
                  onNone: () => Exit.fail("Retry" as const),
                  onSome: (error) => Exit.fail(error._tag === "Fenced" ? ("Fenced" as const) : ("Retry" as const))
                })
            offset += size
            yield* Deferred.succeed(submission.done, answer)
          }
          state.busy = false
        }
      })
    const lanes = Array.from({ length: COMMIT_LANES }, () => {
      const state = { busy: false }
      return { state, fiber: deps.fork(lane(state)) }
    })
    const commitTogether = (items: ReadonlyArray<Checked>) =>
      Effect.gen(function* () {
        if (!active) return Exit.fail("Stopped" as const) as Batched
        const done = yield* Deferred.make<Batched>()
        yield* Queue.offer(submissions, { items, done })
        return yield* Deferred.await(done)
      })

    /**
     * Messages that passed their checks, applied in arrival order in one transaction (group commit,
     * issue 12), with other entities' groups that wait at the same time; should that transaction fail,
     * each is applied on its own, with its own retries.
     */
    const applyGroup = (items: ReadonlyArray<Checked>) =>
      Effect.gen(function* () {
        if (items.length === 0) return
        const started = Date.now()
        const exit = yield* commitTogether(items)
        if (Exit.isSuccess(exit)) {
          for (const [i, result] of exit.value.entries()) {
            const { msg, id, envelope } = items[i]!
            yield* ack(msg)
            const outcome = result._tag === "Applied" ? "applied" : "duplicate"
            yield* reply(msg, envelope.id, outcome, result._tag === "Applied" ? result.reply : undefined)
            settings.onApplied?.({ kind: kind.name, id, envelope, outcome, startedAt: started, at: Date.now() })
          }
          return
        }
        const failed = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
        if (failed === "Stopped") return
        if (failed === "Fenced") {
          for (const { id, envelope } of items)
            deps.emit({ _tag: "CommitRefused", kind: kind.name, shard, epoch, id, messageId: envelope.id })
          return lose()
        }
        for (const { msg, id, envelope } of items) {
          if (!active) return
          yield* handleCommand(msg, id, envelope)
        }
      })

    /** Check each message, dead-letter the bad ones in their place, apply the rest in groups. */
    const handleMany = (msgs: ReadonlyArray<JsMsg>) =>
      Effect.gen(function* () {
        let group: Array<Checked> = []
        for (const msg of msgs) {
          const checked = check(msg)
          if (!Effect.isEffect(checked)) {
            group.push(checked)
            continue
          }
          yield* applyGroup(group)
          group = []
          yield* checked
        }
        yield* applyGroup(group)
      })

    /**
     * An entity's messages, one group at a time. Its take is never interrupted while a message may be on the
     * way to it: an interrupted `Queue.take` whose item was already handed over loses that item (Effect's
     * queue does not put it back), and a lost message here is held, its ack deadline pushed back for as long
     * as the shard is ours, and never applied. So an idle mailbox is not left by a timeout on its take; the
     * sweeper below shuts its queue down once nothing waits in it and nothing was offered for `idleAfterMs`.
     */
    const mailboxLoop = (box: Mailbox): Effect.Effect<void> =>
      Effect.gen(function* () {
        while (true) {
          const next = yield* Queue.take(box.queue)
          if (!active) continue // not ours any more: leave it unacked for the new owner
          box.busy = true
          // What else waits for this entity goes in the same transaction (group commit, issue 12).
          const taken = [next, ...(yield* Queue.takeUpTo(box.queue, settings.groupMax - 1))]
          yield* handleMany(taken).pipe(
            Effect.ensuring(
              Effect.sync(() => {
                box.busy = false
                box.lastUsed = Date.now()
                for (const msg of taken) held.delete(msg)
              })
            )
          )
        }
      })

    /**
     * Passivation: a mailbox that is not busy, holds no message and was given none for `idleAfterMs` leaves
     * the map and its queue is shut down (which ends its loop's waiting take). All of that is decided
     * synchronously, so the dispatcher never offers to a mailbox that left; and a message handed to a loop
     * but not yet taken up counts as use (`dispatch` stamps `lastUsed`), so its mailbox is not idle.
     */
    const sweepEveryMs = Math.max(5, Math.min(1_000, Math.floor(settings.idleAfterMs / 2)))
    const sweeper = deps.fork(
      Effect.gen(function* () {
        while (true) {
          yield* Effect.sleep(sweepEveryMs)
          const now = Date.now()
          const idle: Array<Mailbox> = []
          for (const box of boxes.values()) {
            // A queue's size is negative while its loop waits on it: count only messages.
            const waiting = box.queue.unsafeSize().pipe(Option.getOrElse(() => 0))
            if (box.busy || waiting > 0 || now - box.lastUsed < settings.idleAfterMs) continue
            boxes.delete(box.id)
            idle.push(box)
          }
          for (const box of idle) yield* Queue.shutdown(box.queue)
        }
      })
    )

    const dispatch = (msg: JsMsg) =>
      Effect.suspend(() => {
        if (!active) return Effect.void
        const id = entityOf(msg.subject)
        let box = boxes.get(id)
        if (box === undefined) {
          const created: Mailbox = {
            id,
            queue: Effect.runSync(Queue.bounded<JsMsg>(settings.mailboxCapacity)),
            busy: false,
            lastUsed: Date.now()
          }
          boxes.set(id, created)
          deps.fork(mailboxLoop(created))
          box = created
        }
        const now = Date.now()
        held.set(msg, now)
        box.lastUsed = now
        // A full mailbox suspends the puller: nothing more is pulled until this entity catches up.
        return box.queue.unsafeOffer(msg) ? Effect.void : Queue.offer(box.queue, msg)
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
        catch: (cause) => Option.some(jsError(`consume ${kind.name}/${shard}`)(cause))
      }).pipe(Effect.flatMap((result) => (result.done ? Effect.fail(Option.none()) : Effect.succeed(result.value))))
      yield* Stream.repeatEffectOption(next).pipe(Stream.runForEach(dispatch))
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
      // A queue's size goes negative while a taker waits on it (an idle mailbox): count only messages.
      for (const box of boxes.values()) sum += Math.max(0, box.queue.unsafeSize().pipe(Option.getOrElse(() => 0)))
      return sum
    }
    const idle = () => depth() === 0 && [...boxes.values()].every((box) => !box.busy)

    const stop = (graceful: boolean) =>
      Effect.gen(function* () {
        yield* Fiber.interrupt(puller)
        yield* Fiber.interrupt(extender)
        yield* Fiber.interrupt(sweeper)
        if (graceful && active) {
          const deadline = Date.now() + settings.drainTimeoutMs
          while (!idle() && Date.now() < deadline) yield* Effect.sleep(10)
        }
        active = false
        held.clear()
        // What waits in the mailboxes is left unacknowledged for the next owner; their loops end.
        for (const box of boxes.values()) {
          yield* Queue.takeAll(box.queue)
          yield* Queue.shutdown(box.queue)
        }
        boxes.clear()
        // Groups still waiting are not ours any more: left unacknowledged for the next owner. A lane in the
        // middle of a batch carries it through (the fence decides); idle ones stop.
        yield* stoppedAll([...(yield* Queue.takeAll(submissions))])
        yield* Fiber.interruptAll(lanes.filter((l) => !l.state.busy).map((l) => l.fiber))
      })

    return {
      kind: kind.name,
      shard,
      epoch,
      isActive: () => active,
      depth,
      mailboxes: () => boxes.size,
      stop
    } satisfies ShardHandle
  })
