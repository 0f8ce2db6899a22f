import { SqlClient } from "@effect/sql"
import { Consume, type Envelope, type EnvelopeOf, registry } from "@sam/bus"
import { Context, Effect } from "effect"
import { NodeProvisionRequested } from "./NodeActor.js"

/** Where nodes come from: the local provider (vm-agent processes here) or a cloud (Hetzner, later). */
export class NodeProvider extends Context.Tag("sam/NodeProvider")<
  NodeProvider,
  {
    /** make the node run; idempotent: a node already running is left alone */
    readonly provision: (nodeId: string) => Effect.Effect<void, unknown>
  }
>() {}

const requests = registry(NodeProvisionRequested)

/**
 * Carries out `node.provision-requested` events with the provider, from a durable consumer on
 * SAM_EVT, so a request survives a control-plane restart. At start, nodes the ledger says are alive
 * are provisioned again (for the local provider, their processes died with the previous control plane).
 */
export const runProvisioner = Effect.fn("Provisioner.run")(function* () {
  const provider = yield* NodeProvider
  const sql = yield* SqlClient.SqlClient
  const alive = yield* sql<{ id: string }>`
    SELECT id FROM nodes WHERE provider = 'local' AND status IN ('provisioning', 'running', 'warm')`
  yield* Effect.forEach(
    alive,
    (node) =>
      provider.provision(node.id).pipe(Effect.catchAll((e) => Effect.logError(`cannot restart node ${node.id}`, e))),
    {
      discard: true
    }
  )
  yield* Consume.ensureConsumer("SAM_EVT", {
    durable: "provisioner",
    filterSubject: `sam.evt.system.node.*.${NodeProvisionRequested.type}`
  })
  type Request = EnvelopeOf<typeof NodeProvisionRequested> & Envelope
  yield* Consume.run(Consume.consume<typeof requests.defs, Request>("SAM_EVT", "provisioner", requests), (delivery) =>
    provider.provision(delivery.envelope.body.nodeId).pipe(Effect.as(Consume.Outcome.Ack()))
  )
})
