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

/** C0 controls but tab, and DEL: a boot-log line is one line of text, shown in a page and a terminal. */
const hasControl = (value: string) => {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i)
    if ((code < 0x20 && code !== 0x09) || code === 0x7f) return true
  }
  return false
}
const oneLine = <S extends z.ZodString>(schema: S) =>
  storable(schema).refine((value) => !hasControl(value), "must not contain control characters")

/** One line of a node's boot log: a boot-script step or a cloud-init stage, as the node reported it. */
export const BootLogEntry = z.object({
  /**
   * the line's number in the machine's boot log (`/var/log/sam-boot.log`): a line sent twice (live, then
   * again with the exchange) is stored once
   */
  seq: z.number().int().min(1).max(1_000_000).optional(),
  at: z.iso.datetime(),
  step: oneLine(z.string().min(1).max(64)),
  status: z.enum(["started", "completed", "failed", "info"]),
  // stored in a text column: a NUL or a control character is refused here (400), not in the transaction
  message: oneLine(z.string().max(2000))
})
export type BootLogEntry = z.infer<typeof BootLogEntry>

/** A NATS user public key (`U…`): the node made the key pair and keeps its seed. */
export const NodeUserKey = z
  .string()
  .regex(/^U[A-Z2-7]{55}$/, "a NATS user public key: U followed by 55 base32 characters")

export const BootExchange = z.object({
  token: BootToken,
  /** the node the machine was booted as (cloud user data names it); when given it must be the token's */
  nodeId: NodeId.optional(),
  /**
   * the public key of the NATS user key pair the node made for itself; the exchange signs a JWT for it.
   * The same token, node and key again within `BOOT_REPEAT_SECONDS` of the first use signs again (the
   * first answer was lost); any other key is refused.
   */
  publicKey: NodeUserKey,
  /** the boot progress so far, reported with the exchange */
  bootLog: z.array(BootLogEntry).max(200).optional()
})

/** How long after its use a token may be exchanged again for the same node and public key (5 minutes). */
export const BOOT_REPEAT_SECONDS = 300

export const BootCredentials = z.object({
  nodeId: NodeId,
  /** the NATS URL this node connects to */
  natsUrl: z.string(),
  /**
   * the node's NATS user JWT for the public key it sent: its own subjects only, renewed by the vm-agent.
   * Useless without the seed, which never left the node.
   */
  jwt: z.string(),
  expiresAt: z.iso.datetime()
})

/** Boot-log lines a cloud node's boot script sends as it goes, before its exchange (with its unspent token). */
export const BootLogAppend = z.object({
  token: BootToken,
  nodeId: NodeId,
  entries: z
    .array(BootLogEntry.extend({ seq: z.number().int().min(1).max(1_000_000) }))
    .min(1)
    .max(50)
})

/**
 * `sam.agent.<nodeId>.bootlog` — a node's vm-agent, once connected, sends the lines its boot log file gains
 * after its exchange (request/reply; its own subject only): stored as `POST /node-boot/log` stores them.
 */
export const bootLogSubject = (nodeId: string) => `sam.agent.${nodeId}.bootlog`
export const NodeBootLogReport = BootLogAppend.pick({ entries: true })
export const NodeBootLogReply = z.union([
  z.object({ ok: z.literal(true), stored: z.number().int() }),
  z.object({ ok: z.literal(false), error: z.string() })
])
export type NodeBootLogReply = z.infer<typeof NodeBootLogReply>

export const BootLogAppended = z.object({
  /** how many of the lines were new (a line already stored, by its number, is not stored again) */
  stored: z.number().int()
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
  appendBootLog: endpoint({
    method: "POST",
    path: "/node-boot/log",
    summary:
      "A booting cloud node adds lines to its boot log as it goes, with its bootstrap token while unspent (not " +
      "spending it); 401 once it is spent, expired or another node's; 429 past the rate or the node's line cap",
    tag: "node-boot",
    auth: false,
    body: BootLogAppend,
    response: BootLogAppended
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
