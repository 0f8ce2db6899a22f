/**
 * Subject builders: the only place subject strings are assembled. Every token is checked, so an id
 * with a dot, a space or a wildcard can never widen a subject (`sam.node.a.>` from an id `a.>`).
 */

/** A valid single subject token: letters, digits, `_` and `-`. */
const TOKEN = /^[A-Za-z0-9_-]{1,128}$/
/** A message type may span several tokens (`session.failed`). */
const TYPE = /^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,4}$/

export class InvalidSubjectToken extends Error {
  constructor(readonly token: string) {
    super(`invalid subject token: ${JSON.stringify(token)}`)
  }
}

export const token = (value: string): string => {
  if (!TOKEN.test(value)) throw new InvalidSubjectToken(value)
  return value
}

const messageType = (value: string): string => {
  if (!TYPE.test(value)) throw new InvalidSubjectToken(value)
  return value
}

export const isToken = (value: string): boolean => TOKEN.test(value)

/** `sam.cmd.<kind>.<shard>.<id>` — a command to the actor `<kind>/<id>` (stream SAM_CMD). */
export const command = (kind: string, shard: number, id: string) => `sam.cmd.${token(kind)}.${shard}.${token(id)}`
/** Every command of one shard of one kind: the filter of that shard's consumer. */
export const commandShard = (kind: string, shard: number) => `sam.cmd.${token(kind)}.${shard}.*`

/** `sam.evt.<projectId>.<kind>.<id>.<type>` — a domain event (stream SAM_EVT). */
export const event = (projectId: string, kind: string, id: string, type: string) =>
  `sam.evt.${token(projectId)}.${token(kind)}.${token(id)}.${messageType(type)}`
export const projectEvents = (projectId: string) => `sam.evt.${token(projectId)}.>`

/** `sam.node.<nodeId>.cmd.<type>` — a command to one node's vm-agent (stream SAM_NODE). */
export const nodeCommand = (nodeId: string, type: string) => `sam.node.${token(nodeId)}.cmd.${messageType(type)}`
export const nodeAll = (nodeId: string) => `sam.node.${token(nodeId)}.>`
/** The filter of a node's durable consumer on SAM_NODE. */
export const nodeCommands = (nodeId: string) => `sam.node.${token(nodeId)}.cmd.>`

/** `sam.agent.<nodeId>.rpt.<type>[.<id>]` — a vm-agent report (stream SAM_AGENT). */
export const agentReport = (nodeId: string, type: string, id?: string) =>
  `sam.agent.${token(nodeId)}.rpt.${messageType(type)}${id === undefined ? "" : `.${token(id)}`}`
export const agentAll = (nodeId: string) => `sam.agent.${token(nodeId)}.>`

/** `sam.agent.<nodeId>.hb` — heartbeat, core NATS only (not stored in a stream). */
export const heartbeat = (nodeId: string) => `sam.agent.${token(nodeId)}.hb`

/** `sam.pty.<nodeId>.<ptyId>.{in,out}` — terminal bytes, core NATS. */
export const pty = (nodeId: string, ptyId: string, direction: "in" | "out") =>
  `sam.pty.${token(nodeId)}.${token(ptyId)}.${direction}`
export const ptyAll = (nodeId: string) => `sam.pty.${token(nodeId)}.>`

/**
 * Core NATS, gateway → every gateway: a credential was revoked (or a sign-in ended), so each gateway
 * closes the feed connections opened with it at once.
 */
export const gatewayRevoked = "sam.gw.revoked"

/**
 * `sam.in.<userId>.<tokenId>.<command>` — request/reply ingress for programmatic clients (ADR 0011).
 * A client's credentials are bound to one API token: it may publish only under its own user and
 * token, so the ingress reads both from the subject and checks the token on every request.
 */
export const ingress = (userId: string, tokenId: string, commandName: string) =>
  `sam.in.${token(userId)}.${token(tokenId)}.${messageType(commandName)}`
/** Everything one credential may publish: the prefix `sam.in.<userId>.<tokenId>` and below. */
export const ingressPrefix = (userId: string, tokenId: string) => `sam.in.${token(userId)}.${token(tokenId)}`
export const ingressAll = (userId: string, tokenId: string) => `${ingressPrefix(userId, tokenId)}.>`
/** What the ingress subscribes to: every user's and token's commands. */
export const ingressEverything = "sam.in.*.*.>"

/** The parts of an ingress subject, or undefined when it is not one. */
export const parseIngress = (subject: string) => {
  const parts = subject.split(".")
  if (parts.length < 5 || parts[0] !== "sam" || parts[1] !== "in") return undefined
  const [userId, tokenId] = [parts[2]!, parts[3]!]
  const commandName = parts.slice(4).join(".")
  if (!isToken(userId) || !isToken(tokenId) || !TYPE.test(commandName)) return undefined
  return { userId, tokenId, commandName }
}

/** The inbox prefix of a programmatic client's connection; its credentials allow replies only there. */
export const userInboxPrefix = (userId: string, tokenId: string) => `_INBOX.${token(userId)}.${token(tokenId)}`

/** The inbox prefix a node's connection must use; its credentials allow replies only there. */
export const nodeInboxPrefix = (nodeId: string) => `_INBOX.node.${token(nodeId)}`
/** The durable consumer on SAM_NODE through which one node receives its commands. */
export const nodeConsumerName = (nodeId: string) => `node-${token(nodeId)}`

/** Stable shard of an entity id: FNV-1a 32-bit, modulo the kind's shard count. */
export const shardOf = (id: string, shards: number): number => {
  let hash = 0x811c9dc5
  for (let i = 0; i < id.length; i++) {
    hash ^= id.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash % shards
}
