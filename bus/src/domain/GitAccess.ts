import { z } from "zod"
import { WorkspaceId } from "../Ids.js"

/**
 * Repository access for a workspace (ADR 0028): a vm-agent asks the control plane on its own subject
 * `sam.agent.<nodeId>.git` (request/reply; the node's account imports only its own `sam.agent.<id>.>`)
 * for a short-lived token to the repository of one of its workspaces. The control plane answers only
 * for a workspace the ledger places on that node, and only with a token limited to that workspace's
 * project repository. The token is a secret: the vm-agent keeps it in memory and hands it to git
 * through the workspace's credential helper; it is never written to disk, logged or put in the agent's
 * environment.
 */
export const gitAccessSubject = (nodeId: string) => `sam.agent.${nodeId}.git`

export const GitAccessRequest = z.object({ workspaceId: WorkspaceId })
export type GitAccessRequest = z.infer<typeof GitAccessRequest>

export const GitAccessReply = z.union([
  z.object({
    ok: z.literal(true),
    /** the git username that goes with the token (GitHub: `x-access-token`) */
    username: z.string().min(1).max(100),
    token: z.string().min(1).max(1000),
    expiresAt: z.iso.datetime(),
    /** the repository's default branch: SAM never pushes to it */
    defaultBranch: z.string().min(1).max(255)
  }),
  z.object({
    ok: z.literal(false),
    /** `none`: the workspace's repository is not reached through SAM (a local path, a public URL) */
    code: z.enum(["none", "forbidden", "unavailable", "bad_request"]),
    error: z.string().max(1000)
  })
])
export type GitAccessReply = z.infer<typeof GitAccessReply>
