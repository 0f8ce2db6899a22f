import { Effect, Layer } from "effect"
import { rejectionRoutes } from "./domain/CommandRejections.js"
import { SessionRef, TaskRef } from "./domain/Kinds.js"
import { NodeKind } from "./domain/NodeActor.js"
import { runNodeRevoker } from "./domain/NodeRevoker.js"
import { makeHeartbeatThrottle, nodeReportRoutes } from "./domain/NodeRoutes.js"
import * as Notifications from "./domain/Notifications.js"
import { ProjectKind } from "./domain/ProjectActor.js"
import { runProvisioner } from "./domain/Provisioner.js"
import * as ReportIngress from "./domain/ReportIngress.js"
import * as SessionActor from "./domain/SessionActor.js"
import { TaskKind } from "./domain/TaskActor.js"
import { WorkspaceKind } from "./domain/WorkspaceActor.js"
import * as NatsAccounts from "./NatsAccounts.js"
import * as ActorRuntime from "./Runtime.js"

export interface ControlPlaneOptions {
  readonly runtime?: ActorRuntime.RuntimeOptions
  readonly session?: SessionActor.SessionActorOptions
  /** how long a renewed node JWT lives (default `SAM_NODE_CREDS_TTL_SECONDS`, else 6 hours) */
  readonly nodeCredsTtlSeconds?: number
}

/**
 * The control plane in the current scope: the actor runtime with the project, task, node, workspace
 * and session kinds; the report ingress (reports → actors, heartbeats → KV and the node actor); the
 * provisioner (node requests → the provider); node credential renewals and revocations (ADR 0016). Several instances may run against one NATS and one
 * Postgres: the runtime shares the shards through its leases.
 */
export const run = Effect.fn("ControlPlane.run")(function* (options: ControlPlaneOptions = {}) {
  // Every reference to a kind (Kinds.ts) must agree with the kind's own name and shard count.
  const session = yield* SessionActor.make({ task: TaskRef, shards: SessionRef.shards, ...options.session })
  const runtime = yield* ActorRuntime.make([ProjectKind, TaskKind, NodeKind, WorkspaceKind, session], options.runtime)
  yield* ReportIngress.run({
    routes: { ...ReportIngress.sessionRoutes(session), ...nodeReportRoutes, ...rejectionRoutes(session) },
    onHeartbeat: makeHeartbeatThrottle()
  })
  yield* Effect.forkScoped(Notifications.run())
  yield* Effect.forkScoped(
    runProvisioner().pipe(Effect.tapErrorCause((cause) => Effect.logError("provisioner stopped", cause)))
  )
  yield* NatsAccounts.runNodeRenewals(options.nodeCredsTtlSeconds ?? NatsAccounts.nodeCredsTtlSeconds())
  yield* Effect.forkScoped(
    runNodeRevoker().pipe(Effect.tapErrorCause((cause) => Effect.logError("node revoker stopped", cause)))
  )
  return runtime
})

export const layer = (options: ControlPlaneOptions = {}) => Layer.scopedDiscard(run(options))
