import { Effect, Layer } from "effect"
import { rejectionRoutes } from "./domain/CommandRejections.js"
import { KindRefs } from "./domain/Kinds.js"
import { NodeKind } from "./domain/NodeActor.js"
import { runNodeRevoker } from "./domain/NodeRevoker.js"
import { makeHeartbeatThrottle, nodeReportRoutes } from "./domain/NodeRoutes.js"
import * as Notifications from "./domain/Notifications.js"
import { ProjectKind } from "./domain/ProjectActor.js"
import { runMachineReconciler, runProvisioner } from "./domain/Provisioner.js"
import * as ReportIngress from "./domain/ReportIngress.js"
import * as SessionActor from "./domain/SessionActor.js"
import { runSnapshotCheck } from "./domain/SessionSnapshotCheck.js"
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
  const session = yield* SessionActor.make(options.session)
  const kinds = [ProjectKind, TaskKind, NodeKind, WorkspaceKind, session]
  // Senders address kinds through Kinds.ts: a kind run with another name or count would never see them.
  for (const kind of kinds) {
    if (!KindRefs.some((ref) => ref.name === kind.name && ref.shards === kind.shards))
      return yield* Effect.dieMessage(`kind ${kind.name} (${kind.shards} shards) is not as Kinds.ts defines it`)
  }
  const runtime = yield* ActorRuntime.make(kinds, options.runtime)
  yield* ReportIngress.run({
    routes: { ...ReportIngress.sessionRoutes(session), ...nodeReportRoutes, ...rejectionRoutes(session) },
    sessionRuns: session,
    onHeartbeat: makeHeartbeatThrottle()
  })
  yield* Effect.forkScoped(Notifications.run())
  yield* Effect.forkScoped(
    runProvisioner().pipe(Effect.tapErrorCause((cause) => Effect.logError("provisioner stopped", cause)))
  )
  yield* Effect.forkScoped(runMachineReconciler())
  yield* Effect.forkScoped(
    runSnapshotCheck(session).pipe(Effect.tapErrorCause((cause) => Effect.logError("snapshot check stopped", cause)))
  )
  yield* NatsAccounts.runNodeRenewals(options.nodeCredsTtlSeconds ?? NatsAccounts.nodeCredsTtlSeconds())
  yield* Effect.forkScoped(
    runNodeRevoker().pipe(Effect.tapErrorCause((cause) => Effect.logError("node revoker stopped", cause)))
  )
  return runtime
})

export const layer = (options: ControlPlaneOptions = {}) => Layer.scopedDiscard(run(options))
