import { Domain, type MessageDef, Nats, Publish, Subjects } from "@sam/bus"
import { Effect, Schedule } from "effect"
import type { z } from "zod"

const { NodeProtocol } = Domain

/**
 * Publishes this node's reports to `sam.agent.<nodeId>.rpt.<type>[.<id>]`. A report that cannot be
 * published (server away) is retried with backoff for up to a minute, then logged: reports are
 * facts the control plane reconciles from, never silently dropped while the server can be reached.
 */
export const makeReporter = Effect.fn("VmAgent.reporter")(function* (nodeId: string) {
  const nats = yield* Nats
  const send = <T extends string, S extends z.ZodType>(def: MessageDef<T, S>, body: z.input<S>, id?: string) =>
    // The envelope is built once: every retry carries the same id, so a publish whose ack was lost
    // and is then retried is stored once (Nats-Msg-Id) and applied once.
    Effect.try(() => def.make(body)).pipe(
      Effect.orDie,
      Effect.flatMap((envelope) =>
        Publish.publish(Subjects.agentReport(nodeId, def.type, id), envelope).pipe(
          Effect.provideService(Nats, nats),
          Effect.retry(Schedule.exponential("100 millis", 2).pipe(Schedule.upTo("60 seconds"))),
          Effect.tapError((error) => Effect.logError(`report ${def.type} lost: ${error.message}`)),
          Effect.ignore
        )
      ),
      Effect.catchAllDefect((defect) => Effect.logError(`report ${def.type} could not be built`, defect))
    )
  const rejected = (body: z.input<typeof NodeProtocol.CommandRejected.body>) =>
    Effect.logWarning(`rejected ${body.commandType ?? "message"} on ${body.subject}: ${body.message}`).pipe(
      Effect.zipRight(send(NodeProtocol.CommandRejected, body))
    )
  return { send, rejected }
})

export type Reporter = Effect.Effect.Success<ReturnType<typeof makeReporter>>
