import { Domain, type MessageDef, Nats, type NatsError, Publish, Subjects } from "@sam/bus"
import { Effect, Schedule } from "effect"
import type { z } from "zod"

const { NodeProtocol } = Domain

/** How a report that cannot be published is retried: made once, not per report. */
const retrying = Schedule.exponential("100 millis", 2).pipe(Schedule.upTo("60 seconds"))

/**
 * Publishes this node's reports to `sam.agent.<nodeId>.rpt.<type>[.<id>]`. A report that cannot be
 * published (server away) is retried with backoff for up to a minute, then logged: reports are
 * facts the control plane reconciles from, never silently dropped while the server can be reached.
 */
export const makeReporter = Effect.fn("VmAgent.reporter")(function* (nodeId: string) {
  const nats = yield* Nats
  /** Publish a made envelope, retried with backoff while it fails, then logged: never failing. */
  const deliver = (def: { readonly type: string }, publishing: Effect.Effect<unknown, NatsError, Nats>) =>
    publishing.pipe(
      Effect.retry(retrying),
      Effect.tapError((error) => Effect.logError(`report ${def.type} lost: ${error.message}`)),
      Effect.ignore,
      Effect.provideService(Nats, nats)
    )
  const send = <T extends string, S extends z.ZodType>(def: MessageDef<T, S>, body: z.input<S>, id?: string) =>
    // The envelope is built once: every retry carries the same id, so a publish whose ack was lost
    // and is then retried is stored once (Nats-Msg-Id) and applied once.
    Effect.try(() => def.make(body)).pipe(
      Effect.orDie,
      Effect.flatMap((envelope) => {
        const subject = Subjects.agentReport(nodeId, def.type, id)
        return deliver(def, Publish.publish(subject, envelope))
      }),
      Effect.catchAllDefect((defect) => Effect.logError(`report ${def.type} could not be built`, defect))
    )
  /**
   * `send` for what a session reports per event (issue 12): the envelope made with the turn's correlation id,
   * published without a span of its own; the same retries when it fails.
   */
  const sendEvent = <T extends string, S extends z.ZodType>(
    def: MessageDef<T, S>,
    body: z.input<S>,
    id: string,
    correlationId: string | undefined,
    traceparent?: string
  ) =>
    Effect.suspend(() => {
      const subject = Subjects.agentReport(nodeId, def.type, id)
      const envelope = def.make(body, correlationId === undefined ? {} : { correlationId })
      return deliver(def, Publish.publishUntraced(subject, envelope, traceparent))
    }).pipe(Effect.catchAllDefect((defect) => Effect.logError(`report ${def.type} could not be built`, defect)))
  const rejected = (body: z.input<typeof NodeProtocol.CommandRejected.body>) =>
    Effect.logWarning(`rejected ${body.commandType ?? "message"} on ${body.subject}: ${body.message}`).pipe(
      Effect.zipRight(send(NodeProtocol.CommandRejected, body))
    )
  return { send, sendEvent, rejected }
})

export type Reporter = Effect.Effect.Success<ReturnType<typeof makeReporter>>
