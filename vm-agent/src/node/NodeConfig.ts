import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { NodeId } from "@sam/bus"
import { Effect, Redacted } from "effect"
import { z } from "zod"

/** A vm-agent's settings, from its environment. Its credentials allow only its own subjects. */
export const NodeSettings = z.object({
  nodeId: NodeId,
  natsUrl: z.string().min(1),
  credsFile: z.string().min(1),
  dataDir: z.string().min(1),
  runtime: z.enum(["auto", "docker", "host"]).default("auto"),
  dockerSocket: z.string().optional(),
  heartbeatMs: z.coerce.number().int().min(100).max(600_000).default(5_000),
  cancelGraceMs: z.coerce.number().int().min(0).max(120_000).default(5_000),
  version: z.string().default("0.1.0"),
  /**
   * where a workspace's task branches are kept as git bundles when it stops (ADR 0023), before an ended workspace is
   * deleted (ADR 0052); default `<dataDir>/branches`
   */
  branchDir: z.string().min(1).optional(),
  /**
   * `demo`: the host runtime keeps a demo agent booted for the next workspace (ADR 0055), so that a demo session's
   * first output does not wait for the agent's start; `off`: every agent starts when its session does
   */
  warmAgent: z.enum(["demo", "off"]).default("demo")
})
export type NodeSettings = z.infer<typeof NodeSettings>

export class NodeConfigError extends Error {}

export const fromEnv = (env: NodeJS.ProcessEnv = process.env) =>
  Effect.gen(function* () {
    const parsed = NodeSettings.safeParse({
      nodeId: env.SAM_NODE_ID,
      natsUrl: env.SAM_NATS_URL,
      credsFile: env.SAM_NATS_CREDS,
      dataDir: env.SAM_NODE_DATA_DIR,
      runtime: env.SAM_NODE_RUNTIME,
      dockerSocket: env.SAM_DOCKER_SOCKET,
      heartbeatMs: env.SAM_NODE_HEARTBEAT_MS,
      cancelGraceMs: env.SAM_NODE_CANCEL_GRACE_MS,
      branchDir: env.SAM_NODE_BRANCH_DIR,
      warmAgent: env.SAM_NODE_WARM_AGENT
    })
    if (!parsed.success) {
      return yield* Effect.die(
        new NodeConfigError(
          `vm-agent settings are invalid: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")} (set SAM_NODE_ID, SAM_NATS_URL, SAM_NATS_CREDS, SAM_NODE_DATA_DIR)`
        )
      )
    }
    const creds = yield* Effect.tryPromise(() => readFile(parsed.data.credsFile, "utf8")).pipe(
      Effect.orDieWith((e) => new NodeConfigError(`cannot read ${parsed.data.credsFile}: ${e}`))
    )
    const settings = { ...parsed.data, branchDir: parsed.data.branchDir ?? join(parsed.data.dataDir, "branches") }
    return { settings, creds: Redacted.make(creds) }
  })
