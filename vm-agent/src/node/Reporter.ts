import { Domain, type MessageDef, Nats, type NatsError, Publish, Subjects } from "@sam/bus"
import { Effect, Runtime, Schedule } from "effect"
import type { z } from "zod"

const { NodeProtocol } = Domain

/** How a report that cannot be published is retried: made once, not per report. */
const RETRY_FIRST_MS = 100
const RETRY_FOR_MS = 60_000
const retrying = Schedule.exponential(RETRY_FIRST_MS, 2).pipe(Schedule.upTo(RETRY_FOR_MS))

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
  const runtime = yield* Effect.runtime<never>()
  const log = Runtime.runFork(runtime)
  /**
   * What a session reports per event, as a promise outside any fiber (issue 12: the path of every event an agent
   * writes, where a fiber's steps, a schedule and a span lookup per event cost more than the publish): the envelope
   * made with the correlation id given and published without a span of its own, with the trace context given (the
   * caller names its turn's, or the one its session began under). The same retries as `send` (`retrying`'s delays,
   * for as long) while `open()`, the same log when it is lost; it never rejects.
   */
  const sendEventNow = <T extends string, S extends z.ZodType>(
    def: MessageDef<T, S>,
    body: z.input<S>,
    {
      id,
      correlationId,
      traceparent,
      open
    }: {
      /** the entity its subject names */
      readonly id: string
      readonly correlationId: string | undefined
      readonly traceparent: string | undefined
      /** retries stop once this is false (the session closed) */
      readonly open: () => boolean
    }
  ): Promise<void> => {
    let envelope: ReturnType<typeof def.make>
    try {
      envelope = def.make(body, correlationId === undefined ? {} : { correlationId })
    } catch (defect) {
      log(Effect.logError(`report ${def.type} could not be built`, defect))
      return Promise.resolve()
    }
    const subject = Subjects.agentReport(nodeId, def.type, id)
    return Publish.publishNowRetrying(nats.streams, subject, envelope, traceparent, {
      firstMs: RETRY_FIRST_MS,
      forMs: RETRY_FOR_MS,
      open
    }).then((outcome) => {
      if (typeof outcome !== "string") log(Effect.logError(`report ${def.type} lost: ${outcome.message}`))
    })
  }
  const rejected = (body: z.input<typeof NodeProtocol.CommandRejected.body>) =>
    Effect.logWarning(`rejected ${body.commandType ?? "message"} on ${body.subject}: ${body.message}`).pipe(
      Effect.zipRight(send(NodeProtocol.CommandRejected, body))
    )
  return { send, sendEventNow, rejected }
})

export type Reporter = Effect.Effect.Success<ReturnType<typeof makeReporter>>
