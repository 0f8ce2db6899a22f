import { z } from "zod"
import { NodeId } from "../Ids.js"
import { endpoint } from "./Endpoint.js"
import { storable } from "./Text.js"

/**
 * The boot path of a node on a machine outside the control plane (ADR 0027): a Hetzner server's
 * cloud-init, or any machine its owner joins. A bootstrap token is short-lived and single-use, bound
 * to one node; the one exchange that uses it gets that node's NATS credentials and nothing else.
 */
export const BOOT_TOKEN_PREFIX = "sam_boot_"
export const BootToken = z
  .string()
  .regex(/^sam_boot_[A-Za-z0-9_-]{43}$/, "a bootstrap token looks like sam_boot_ followed by 43 characters")

/** One line of a node's boot log: a boot-script step or a cloud-init stage, as the vm-agent reported it. */
export const BootLogEntry = z.object({
  at: z.iso.datetime(),
  step: storable(z.string().min(1).max(64)),
  status: z.enum(["started", "completed", "failed", "info"]),
  // stored in a text column: a NUL is refused here (400) rather than failing the exchange's transaction
  message: storable(z.string().max(2000))
})
export type BootLogEntry = z.infer<typeof BootLogEntry>

export const BootExchange = z.object({
  token: BootToken,
  /** the node the machine was booted as (cloud user data names it); when given it must be the token's */
  nodeId: NodeId.optional(),
  /** the boot progress so far, reported with the exchange */
  bootLog: z.array(BootLogEntry).max(200).optional()
})

export const BootCredentials = z.object({
  nodeId: NodeId,
  /** the NATS URL this node connects to */
  natsUrl: z.string(),
  /** the node's NATS user credentials (a `.creds` text): its own subjects only, renewed by the vm-agent */
  creds: z.string(),
  expiresAt: z.iso.datetime()
})

export const JoinToken = z.object({
  nodeId: NodeId,
  token: BootToken,
  expiresAt: z.iso.datetime(),
  /** the one-line install command for a Linux machine with Node (as root) */
  command: z.string(),
  /** the same through the `sam` CLI, from a checkout of this repository */
  samCommand: z.string()
})

export const NodeBootLog = z.object({ entries: z.array(BootLogEntry) })

export const NodeBootEndpoints = {
  exchangeBootToken: endpoint({
    method: "POST",
    path: "/node-boot/exchange",
    summary:
      "A booting node trades its bootstrap token (once, before it expires) for its NATS credentials; 401 otherwise, " +
      "and nothing changes",
    tag: "node-boot",
    auth: false,
    body: BootExchange,
    response: BootCredentials
  }),
  vmAgentArtifact: endpoint({
    method: "GET",
    path: "/node-boot/vm-agent.tar.gz",
    summary: "The compiled vm-agent and demo agent (Node >= 20); its sha256 is in user data and at vm-agent.sha256",
    tag: "node-boot",
    auth: false,
    response: z.unknown()
  }),
  vmAgentChecksum: endpoint({
    method: "GET",
    path: "/node-boot/vm-agent.sha256",
    summary: "The sha256 of vm-agent.tar.gz, as `sha256sum` prints it",
    tag: "node-boot",
    auth: false,
    response: z.unknown()
  }),
  nodeRuntime: endpoint({
    method: "GET",
    path: "/node-boot/node-runtime.tar.gz",
    summary:
      "The control plane's own Node (bin/node), for a machine whose distribution has none >= 20; its architecture " +
      "in x-sam-arch, its sha256 in x-sam-sha256 and at node-runtime.sha256",
    tag: "node-boot",
    auth: false,
    response: z.unknown()
  }),
  nodeRuntimeChecksum: endpoint({
    method: "GET",
    path: "/node-boot/node-runtime.sha256",
    summary: "`<sha256>  node-runtime.tar.gz <arch>` of the Node runtime",
    tag: "node-boot",
    auth: false,
    response: z.unknown()
  }),
  bootScript: endpoint({
    method: "GET",
    path: "/node-boot/boot.sh",
    summary: "The boot script (also in cloud-init user data): `curl -fsSL <url> | sudo bash -s -- --url … --token …`",
    tag: "node-boot",
    auth: false,
    response: z.unknown()
  }),
  createJoinToken: endpoint({
    method: "POST",
    path: "/nodes/join-token",
    summary: "A bootstrap token that makes a machine of mine a node of mine (sam node join), with its install command",
    tag: "nodes",
    response: JoinToken,
    status: 201
  }),
  nodeBootLog: endpoint({
    method: "GET",
    path: "/nodes/:nodeId/boot-log",
    summary: "A node's boot progress as its vm-agent reported it",
    tag: "nodes",
    params: z.object({ nodeId: NodeId }),
    response: NodeBootLog
  })
}
