import { SqlClient } from "@effect/sql"
import { Consume, Domain, type Envelope, type EnvelopeOf, registry } from "@sam/bus"
import { Effect } from "effect"
import * as Actors from "../Client.js"
import { NatsAccounts } from "../NatsAccounts.js"
import { NodeRef } from "./Kinds.js"
import { NodeDestroyRequested } from "./NodeActor.js"
import { NodeProvider } from "./Provisioner.js"

const { ControlProtocol: C } = Domain
const requests = registry(NodeDestroyRequested)

/**
 * How long a node being destroyed may still report its workspaces' deletion before it is cut off
 * (`SAM_NODE_DRAIN_GRACE_MS`, default 30 s).
 */
export const drainGraceMs = () => Number(process.env.SAM_NODE_DRAIN_GRACE_MS ?? 30_000)

/**
 * A node that is being destroyed loses its NATS account (ADR 0016): every user of it is revoked at
 * the server, which closes the vm-agent's connections, and no renewal is granted after. First its
 * workspaces are given back: the node gets their delete commands and may report them deleted, for at
 * most `drainGraceMs` after the request; then it is revoked whatever it still holds, its provider
 * destroys the machine, and the node actor hears `node.destroyed` (the node becomes `deleted`, ADR 0023).
 * From a durable consumer on SAM_EVT, so a request survives a control-plane restart.
 */
export const runNodeRevoker = Effect.fn("NodeRevoker.run")(function* (options: { readonly graceMs?: number } = {}) {
  const accounts = yield* NatsAccounts
  const provider = yield* NodeProvider
  const sql = yield* SqlClient.SqlClient
  const graceMs = options.graceMs ?? drainGraceMs()
  yield* Consume.ensureConsumer("SAM_EVT", {
    durable: "node-revoker",
    filterSubject: `sam.evt.system.node.*.${NodeDestroyRequested.type}`
  })
  type Request = EnvelopeOf<typeof NodeDestroyRequested> & Envelope
  yield* Consume.run(Consume.consume<typeof requests.defs, Request>("SAM_EVT", "node-revoker", requests), (delivery) =>
    Effect.gen(function* () {
      const { nodeId } = delivery.envelope.body
      const [live] = yield* sql<{ n: number }>`
        SELECT count(*)::int AS n FROM workspaces
        WHERE node_id = ${nodeId} AND dispatched_at IS NOT NULL AND status NOT IN ('deleted', 'error')`
      const waited = Date.now() - Date.parse(delivery.envelope.at)
      if ((live?.n ?? 0) > 0 && waited < graceMs) return Consume.Outcome.Nak({ delay: "500 millis" })
      if ((live?.n ?? 0) > 0)
        yield* Effect.logWarning(
          `node ${nodeId}: ${live?.n} workspaces not reported deleted after ${waited} ms; revoking it anyway`
        )
      yield* accounts.revokeNode(nodeId)
      // Then the machine goes (ADR 0023), and the node is `deleted` once it has.
      const detail = yield* provider.destroy(nodeId)
      yield* Actors.send(NodeRef, nodeId, C.NodeDestroyed.make({ nodeId, detail: detail.slice(0, 1000) }))
      return Consume.Outcome.Ack()
    }).pipe(
      Effect.catchAll((e) =>
        Effect.logError(
          `cannot retire node ${delivery.envelope.body.nodeId}: ${e instanceof Error || (typeof e === "object" && e !== null && "message" in e) ? String((e as { message: unknown }).message) : String(e)}`
        ).pipe(Effect.as(Consume.Outcome.Nak({ delay: "5 seconds" })))
      )
    )
  )
})
