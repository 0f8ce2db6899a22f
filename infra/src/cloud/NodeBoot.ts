import type { SqlClient } from "@effect/sql"
import { BootTokens, bootScripts, NodeArtifact } from "@sam/gateway"
import { Context, Data, Effect, Layer, Option, Redacted } from "effect"
import * as CloudInit from "./CloudInit.js"

export class NodeBootError extends Data.TaggedError("NodeBootError")<{
  readonly reason: "artifact" | "token" | "user-data"
  readonly message: string
}> {}

/**
 * A cloud node's boot (ADR 0027): `userData` issues its bootstrap token (single use, minutes; only its
 * hash is stored) and renders the cloud-init that installs the vm-agent, which trades the token for
 * its NATS credentials. User data is stored by the provider, so it holds nothing long-lived.
 */
export class NodeBoot extends Context.Tag("sam/NodeBoot")<
  NodeBoot,
  {
    readonly userData: (node: {
      nodeId: string
      ownerId: string
      provider: string
    }) => Effect.Effect<string, NodeBootError>
  }
>() {}

export interface NodeBootOptions {
  /** the control plane's gateway as nodes reach it (`SAM_NODE_PUBLIC_URL`, else `SAM_PUBLIC_URL`) */
  readonly controlPlaneUrl: string
  /** inbound ports the operator opens on cloud nodes (`SAM_NODE_INBOUND_PORTS`, space or comma separated) */
  readonly inboundPorts?: ReadonlyArray<string>
  readonly tokenTtlSeconds?: number
  readonly runtime?: "auto" | "docker" | "host"
}

export const optionsFromEnv = (env: NodeJS.ProcessEnv, gatewayUrl: string): NodeBootOptions => ({
  controlPlaneUrl: env.SAM_NODE_PUBLIC_URL ?? env.SAM_PUBLIC_URL ?? gatewayUrl,
  inboundPorts: (env.SAM_NODE_INBOUND_PORTS ?? "").split(/[\s,]+/).filter((p) => p !== "")
})

export const make = (options: NodeBootOptions) =>
  Effect.map(Effect.context<SqlClient.SqlClient>(), (context) =>
    NodeBoot.of({
      userData: (node) =>
        Effect.gen(function* () {
          const artifact = yield* NodeArtifact.current().pipe(
            Effect.mapError((e) => new NodeBootError({ reason: "artifact", message: e.message }))
          )
          // Optional: a machine whose image has Node >= 20 never asks for it.
          const runtime = yield* Effect.option(NodeArtifact.runtime())
          const issued = yield* BootTokens.issue({
            nodeId: node.nodeId,
            ownerId: node.ownerId,
            purpose: "cloud",
            provider: node.provider,
            ...(options.tokenTtlSeconds === undefined ? {} : { ttlSeconds: options.tokenTtlSeconds })
          }).pipe(
            Effect.mapError(
              (e) => new NodeBootError({ reason: "token", message: `cannot store the bootstrap token: ${e.message}` })
            )
          )
          const scripts = bootScripts()
          return yield* Effect.try({
            try: () =>
              CloudInit.render({
                controlPlaneUrl: options.controlPlaneUrl,
                nodeId: node.nodeId,
                token: Redacted.value(issued.token),
                artifactSha256: artifact.sha256,
                ...(Option.isSome(runtime) ? { runtimeSha256: runtime.value.sha256 } : {}),
                bootScript: scripts.boot,
                firewallScript: scripts.firewall,
                ...(options.inboundPorts === undefined ? {} : { inboundPorts: options.inboundPorts }),
                ...(options.runtime === undefined ? {} : { runtime: options.runtime })
              }),
            catch: (e) =>
              new NodeBootError({ reason: "user-data", message: e instanceof Error ? e.message : String(e) })
          })
        }).pipe(Effect.provide(context), Effect.withSpan("NodeBoot.userData"))
    })
  )

/** The live layer: tokens in the ledger, the artifact from this build's dist/. */
export const layer = (options: NodeBootOptions) => Layer.effect(NodeBoot, make(options))
