import { createInbox } from "@nats-io/nats-core"
import { Data, Duration, Effect } from "effect"
import * as ActorMessages from "./ActorMessages.js"
import { type Envelope, encode } from "./Envelope.js"
import { NatsError } from "./Errors.js"
import { Nats } from "./Nats.js"
import * as Publish from "./Publish.js"
import * as Subjects from "./Subjects.js"
import * as Trace from "./Trace.js"

/** An actor kind as a sender sees it: its name and shard count (`Domain.TaskRef`, …). */
export interface KindRef {
  readonly name: string
  readonly shards: number
}

/** The header naming the inbox an actor answers `ask` on. */
export const REPLY_HEADER = "Sam-Reply-To"

/** The subject of a command to `kind/id`: `sam.cmd.<kind>.<shard>.<id>`. */
export const subjectOf = (kind: KindRef, id: string) =>
  Subjects.command(kind.name, Subjects.shardOf(id, kind.shards), id)

/** No answer to an `ask` in time; says nothing about whether the command will still be applied. */
export class AskTimeout extends Data.TaggedError("AskTimeout")<{
  readonly kind: string
  readonly id: string
  readonly messageId: string
}> {}

/**
 * Send a command to `kind/id`: published to `sam.cmd.<kind>.<shard>.<id>` with `Nats-Msg-Id` = the
 * envelope id, so sending the same envelope again is harmless. Succeeds once the stream stored it.
 */
export const send = Effect.fn("Actors.send")(function* (kind: KindRef, id: string, command: Envelope) {
  return yield* Publish.publish(subjectOf(kind, id), command)
})

/**
 * Send a command and wait for its outcome: `applied` (with the handler's `reply`), `duplicate` (the
 * message id was already processed) or `dead-lettered`. The answer comes on core NATS after the
 * commit. `AskTimeout` says nothing about whether the command will still be applied.
 */
export const ask = Effect.fn("Actors.ask")(function* (
  kind: KindRef,
  id: string,
  message: Envelope,
  timeout: Duration.DurationInput = "10 seconds"
) {
  const { nc, js } = yield* Nats
  const command = yield* Trace.stamp(message)
  const headers = yield* Trace.headersFor(command)
  // The connection's own inbox prefix, when its credentials only allow replies under one.
  const inbox = createInbox((nc as { readonly options?: { readonly inboxPrefix?: string } }).options?.inboxPrefix)
  const sub = nc.subscribe(inbox, { max: 1 })
  const subject = subjectOf(kind, id)
  const answer = Effect.tryPromise({
    try: async () => {
      for await (const msg of sub) return msg.data
      throw new Error("reply subscription closed")
    },
    catch: (cause) => new NatsError({ reason: "Request", message: `ask ${subject}: ${cause}`, cause })
  })
  const published = Effect.tryPromise({
    try: () => {
      headers.set(REPLY_HEADER, inbox)
      return js.publish(subject, encode(command), { msgID: command.id, headers })
    },
    catch: (cause) => new NatsError({ reason: "Publish", message: `ask ${subject}: ${cause}`, cause })
  })
  const data = yield* published.pipe(
    Effect.zipRight(answer),
    Effect.timeoutFail({
      duration: Duration.decode(timeout),
      onTimeout: () => new AskTimeout({ kind: kind.name, id, messageId: command.id })
    }),
    Effect.ensuring(Effect.sync(() => sub.unsubscribe()))
  )
  const decoded = ActorMessages.AskReply.body.safeParse(JSON.parse(new TextDecoder().decode(data)).body)
  if (!decoded.success) {
    return yield* new NatsError({ reason: "Request", message: `ask ${subject}: malformed reply` })
  }
  return decoded.data
})
