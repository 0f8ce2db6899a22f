import { SqlClient } from "@effect/sql"
import { Consume, defineMessage, type Envelope, type EnvelopeOf, Publish, registry, Subjects } from "@sam/bus"
import { Context, Effect } from "effect"
import { z } from "zod"
import { HEARTBEAT_FRESH_SECONDS } from "./Kinds.js"
import { NodeProvisionRequested } from "./NodeActor.js"
import { settleMs } from "./Reconciler.js"

/**
 * Where nodes come from: the local provider (vm-agent processes here) or a cloud (Hetzner, ADR 0026).
 * A control plane with several routes each node to its ledger row's provider (`infra/src/NodeProviders.ts`).
 */
export class NodeProvider extends Context.Tag("sam/NodeProvider")<
  NodeProvider,
  {
    /** make the node run; idempotent: a node already running is left alone */
    readonly provision: (nodeId: string) => Effect.Effect<void, unknown>
    /**
     * destroy the machine (the local provider stops its vm-agent for good); idempotent: a node that is
     * gone already is fine. Says what it did.
     */
    readonly destroy: (nodeId: string) => Effect.Effect<string, unknown>
    /**
     * the nodes whose machines exist, for the reconciler; fails rather than answer a partial list (a
     * machine missing from it would be taken for vanished)
     */
    readonly list: () => Effect.Effect<ReadonlyArray<string>, unknown>
  }
>() {}

const requests = registry(NodeProvisionRequested)

/** The audit line of the machine reconciler, on `sam.evt.system.node.<nodeId>.machine-reconciled`. */
export const MachineAudit = defineMessage(
  "machine-reconciled",
  z.object({ nodeId: z.string(), found: z.string().max(1000), action: z.enum(["destroyed", "reported"]) }),
  { durable: true }
)

/**
 * Carries out `node.provision-requested` events with the provider, from a durable consumer on
 * SAM_EVT, so a request survives a control-plane restart. At start, nodes the ledger says are alive
 * are provisioned again (for the local provider, their processes died with the previous control plane).
 */
export const runProvisioner = Effect.fn("Provisioner.run")(function* () {
  const provider = yield* NodeProvider
  const sql = yield* SqlClient.SqlClient
  // A cloud node still provisioning may have lost its request with the previous control plane; its
  // provider looks for its server before it creates one.
  const alive = yield* sql<{ id: string }>`
    SELECT id FROM nodes
    WHERE (provider = 'local' AND status IN ('provisioning', 'running', 'warm'))
      OR (provider <> 'local' AND status = 'provisioning')`
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

/** How often the machine reconciler compares the provider's machines with the ledger; `SAM_RECONCILE_INTERVAL_MS`. */
export const reconcileIntervalMs = () => Number(process.env.SAM_RECONCILE_INTERVAL_MS ?? 60_000)
/** At most this many machines destroyed per run (`SAM_RECONCILE_MAX_DESTROYS`, default 5): a bad ledger read cannot sweep a fleet. */
export const reconcileMaxDestroys = () => Number(process.env.SAM_RECONCILE_MAX_DESTROYS ?? 5)

/**
 * The machine side of the reconciler (ADR 0023), every `reconcileIntervalMs`: a machine whose node the
 * ledger does not have, or has `deleted`, is destroyed; a node the ledger says is alive, whose machine
 * this provider does not hold and which has not heartbeated for `HEARTBEAT_FRESH_SECONDS`, is reported
 * (once): it takes no work while silent (a task's placement needs a fresh heartbeat), `sam up` starts
 * such nodes again when it starts, and a user can delete it. Each with an audit event
 * (`machine-reconciled`) and a log line.
 */
export const runMachineReconciler = Effect.fn("Provisioner.reconcileMachines")(function* () {
  const provider = yield* NodeProvider
  const sql = yield* SqlClient.SqlClient
  const reported = new Set<string>()
  const audit = (nodeId: string, found: string, action: "destroyed" | "reported") =>
    Effect.logWarning(`reconciler: node ${nodeId}: ${found}; ${action}`).pipe(
      Effect.zipRight(
        Publish.publish(
          Subjects.event("system", "node", nodeId, MachineAudit.type),
          MachineAudit.make({ nodeId, found, action })
        )
      ),
      Effect.catchAll((e) => Effect.logError(`reconciler: cannot record its finding on ${nodeId}`, e))
    )
  const once = Effect.gen(function* () {
    const machines = yield* provider.list()
    // A node created a moment ago may not be provisioned yet: only rows that kept their status count.
    const rows = yield* sql<{ id: string; status: string; settled: boolean; silent: boolean }>`
      SELECT id, status, updated_at < now() - make_interval(secs => ${settleMs() / 1000}) AS settled,
        (last_heartbeat_at IS NULL OR last_heartbeat_at < now() - make_interval(secs => ${HEARTBEAT_FRESH_SECONDS})) AS silent
      FROM nodes
      WHERE id IN ${sql.in(machines.length > 0 ? [...machines] : [""])}
        OR status IN ('provisioning', 'running', 'warm')`
    const status = new Map(rows.map((r) => [r.id, r.status]))
    let destroyed = 0
    for (const nodeId of machines) {
      const s = status.get(nodeId)
      if (s !== undefined && s !== "deleted") continue
      if (destroyed >= reconcileMaxDestroys()) {
        yield* Effect.logWarning(`reconciler: ${reconcileMaxDestroys()} machines destroyed this run; the rest wait`)
        break
      }
      destroyed += 1
      yield* provider.destroy(nodeId)
      yield* audit(
        nodeId,
        s === undefined ? "a machine whose node is not in the ledger" : "a machine of a deleted node",
        "destroyed"
      )
    }
    const have = new Set(machines)
    for (const row of rows) {
      const live = ["provisioning", "running", "warm"].includes(row.status)
      if (have.has(row.id) || !row.settled || !row.silent || !live || reported.has(row.id)) continue
      reported.add(row.id)
      const found = `${row.status} in the ledger, but no machine of it runs and it is silent`
      // Marked on the row, for the node list and the user; the node actor does not write error_reason.
      yield* sql`UPDATE nodes SET error_reason = ${`reconciler: ${found}`} WHERE id = ${row.id}`
      yield* audit(row.id, found, "reported")
    }
  }).pipe(Effect.catchAllCause((cause) => Effect.logError("reconciler: machines", cause)))
  yield* once.pipe(Effect.delay(reconcileIntervalMs()), Effect.forever)
})
