import { SqlClient } from "@effect/sql"
import { ControlPlane } from "@sam/actors"
import { Context, Effect, Layer } from "effect"

type Shape = ControlPlane.NodeProvider["Type"]
export type ProviderName = "local" | "hetzner" | "joined"

/**
 * One `NodeProvider` over several (ADR 0026): a node goes to the provider its ledger row names
 * (`nodes.provider`); a machine with no row (an orphan) to the provider that listed it last. `list` is
 * every provider's machines and fails when any of them fails, so the reconciler acts on a whole
 * picture or not at all.
 */
export const routed = (providers: { readonly local: Shape } & Partial<Record<Exclude<ProviderName, "local">, Shape>>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const listedBy = new Map<string, ProviderName>()
    const names = Object.keys(providers) as ProviderName[]
    const pick = (nodeId: string) =>
      Effect.gen(function* () {
        const rows = yield* sql<{ provider: ProviderName }>`SELECT provider FROM nodes WHERE id = ${nodeId}`.pipe(
          Effect.orDie
        )
        const name = rows[0]?.provider ?? listedBy.get(nodeId) ?? "local"
        const provider = providers[name]
        if (provider === undefined)
          return yield* Effect.fail(
            new Error(`node ${nodeId} is a ${name} node and this control plane has no ${name} provider`)
          )
        return provider
      })
    const shape: Shape = {
      provision: (nodeId) => Effect.flatMap(pick(nodeId), (p) => p.provision(nodeId)),
      destroy: (nodeId) => Effect.flatMap(pick(nodeId), (p) => p.destroy(nodeId)),
      list: () =>
        Effect.gen(function* () {
          const all: string[] = []
          for (const name of names) {
            const nodes = yield* providers[name]!.list()
            for (const nodeId of nodes) listedBy.set(nodeId, name)
            all.push(...nodes)
          }
          return all
        })
    }
    return shape
  })

/**
 * Machines their owners joined (ADR 0027): nothing to provision (the machine boots itself with its join
 * token) and nothing to destroy (retiring the node revokes its NATS account, which ends its vm-agent's
 * connection; the machine is its owner's). It lists none: a silent one is reported by the reconciler.
 */
export const joined: Shape = {
  provision: () => Effect.void,
  destroy: (nodeId) =>
    Effect.succeed(`node ${nodeId} is a machine its owner joined: its credentials are revoked; the machine is theirs`),
  list: () => Effect.succeed([])
}

/** The control plane's `NodeProvider`: the local provider's layer, and the cloud providers' beside it. */
export const layer = <E, R, E2, R2>(
  local: Layer.Layer<ControlPlane.NodeProvider, E, R>,
  hetzner?: Layer.Layer<ControlPlane.NodeProvider, E2, R2>
) =>
  Layer.scoped(
    ControlPlane.NodeProvider,
    Effect.gen(function* () {
      const l = Context.get(yield* Layer.build(local), ControlPlane.NodeProvider)
      const h = hetzner === undefined ? undefined : Context.get(yield* Layer.build(hetzner), ControlPlane.NodeProvider)
      return yield* routed({ local: l, joined, ...(h === undefined ? {} : { hetzner: h }) })
    })
  )
