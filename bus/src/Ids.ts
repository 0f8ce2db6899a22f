import { z } from "zod"

/**
 * Ids are opaque tokens `<prefix>_<base32>`: safe as a NATS subject token (no dots, no wildcards)
 * and never confusable across kinds because the prefix is part of the branded schema.
 */
const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"

/**
 * Random bytes drawn 4 KiB at a time from the system's generator and used once each: a message id per
 * transcript entry made one `getRandomValues` call per id, 1% of the control plane's CPU at agent speed.
 */
const POOL = 4096
let pool = new Uint8Array(0)
let used = 0

const randomToken = (length = 20): string => {
  if (used + length > pool.length) {
    pool = globalThis.crypto.getRandomValues(new Uint8Array(Math.max(POOL, length)))
    used = 0
  }
  let out = ""
  for (let i = used; i < used + length; i++) out += ALPHABET[pool[i]! & 31]
  used += length
  return out
}

export const idSchema = <const P extends string>(prefix: P) =>
  z
    .string()
    .regex(new RegExp(`^${prefix}_[0-9a-z]{1,64}$`), { message: `expected an id like ${prefix}_…` })
    .brand<`${P}Id`>()

export const makeId = <const P extends string>(prefix: P): string & z.$brand<`${P}Id`> =>
  `${prefix}_${randomToken()}` as string & z.$brand<`${P}Id`>

export const UserId = idSchema("user")
export type UserId = z.infer<typeof UserId>
export const ProjectId = idSchema("proj")
export type ProjectId = z.infer<typeof ProjectId>
export const TaskId = idSchema("task")
export type TaskId = z.infer<typeof TaskId>
export const NodeId = idSchema("node")
export type NodeId = z.infer<typeof NodeId>
export const WorkspaceId = idSchema("ws")
export type WorkspaceId = z.infer<typeof WorkspaceId>
export const SessionId = idSchema("sess")
export type SessionId = z.infer<typeof SessionId>
export const MessageId = idSchema("msg")
export type MessageId = z.infer<typeof MessageId>
export const ApiTokenId = idSchema("tok")
export type ApiTokenId = z.infer<typeof ApiTokenId>
export const UserSessionId = idSchema("uses")
export type UserSessionId = z.infer<typeof UserSessionId>
export const NotificationId = idSchema("ntf")
export type NotificationId = z.infer<typeof NotificationId>
export const ProfileId = idSchema("prof")
export type ProfileId = z.infer<typeof ProfileId>
