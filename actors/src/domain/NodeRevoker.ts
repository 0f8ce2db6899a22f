import { Consume, type Envelope, type EnvelopeOf, registry } from "@sam/bus"
import { Effect } from "effect"
import { NatsAccounts } from "../NatsAccounts.js"
import { NodeDestroyRequested } from "./NodeActor.js"

const requests = registry(NodeDestroyRequested)

/**
 * A node that is being destroyed loses its NATS account at once (ADR 0016): every user of it is
 * revoked at the server, which closes the vm-agent's connections, and no renewal is granted after.
 * From a durable consumer on SAM_EVT, so a request survives a control-plane restart.
 */
export const runNodeRevoker = Effect.fn("NodeRevoker.run")(function* () {
  const accounts = yield* NatsAccounts
  yield* Consume.ensureConsumer("SAM_EVT", {
    durable: "node-revoker",
    filterSubject: `sam.evt.system.node.*.${NodeDestroyRequested.type}`
  })
  type Request = EnvelopeOf<typeof NodeDestroyRequested> & Envelope
  yield* Consume.run(Consume.consume<typeof requests.defs, Request>("SAM_EVT", "node-revoker", requests), (delivery) =>
    accounts.revokeNode(delivery.envelope.body.nodeId).pipe(
      Effect.as(Consume.Outcome.Ack()),
      Effect.catchAll((e) =>
        Effect.logError(`cannot revoke node ${delivery.envelope.body.nodeId}: ${e.message}`).pipe(
          Effect.as(Consume.Outcome.Nak({ delay: "5 seconds" }))
        )
      )
    )
  )
})
