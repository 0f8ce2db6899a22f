import { z } from "zod"

/**
 * What an agent's process starts with beyond its harness (ADR 0024): the user's credential as variables or a file,
 * the project's and the profile's runtime variables and files (merged in the control plane, the profile winning on
 * the same key or path), the model and the permission mode. It travels inside `session.start` sealed to the node's
 * curve key (an nkeys xkey, announced in its heartbeats): the outbox row in Postgres and the SAM_NODE stream hold
 * only ciphertext that this node alone can open.
 */
export const AgentLaunch = z.object({
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/), z.string().max(65_536)),
  /** `~/…` in the workspace user's home, else relative to the checkout; written 0600 before the agent starts */
  files: z
    .array(
      z.object({
        path: z
          .string()
          .min(1)
          .max(512)
          .refine((p) => !p.split("/").includes("..") && !p.startsWith("/"), "inside the workspace"),
        content: z.string().max(1_048_576)
      })
    )
    .max(200),
  model: z.string().max(200).optional(),
  /** the agent's own ACP session mode for the profile's permission mode */
  sessionMode: z.string().max(64).optional(),
  /** added to the first prompt of the session */
  systemPromptAppend: z.string().max(20_000).optional(),
  /** why the agent cannot start (no credential for it): the node refuses the start with this reason */
  unavailable: z.string().max(1000).optional()
})
export type AgentLaunch = z.infer<typeof AgentLaunch>

/** The sealed launch in `session.start`: the sender's one-off public xkey and the box. */
export const SealedLaunch = z.object({
  sender: z.string().regex(/^X[A-Z2-7]{55}$/),
  box: z.string().max(4_000_000)
})
export type SealedLaunch = z.infer<typeof SealedLaunch>

/** A node's public curve key as it announces it. */
export const NodeXkey = z.string().regex(/^X[A-Z2-7]{55}$/)
