import { z } from "zod"

/**
 * Ids are opaque tokens `<prefix>_<base32>`: safe as a NATS subject token (no dots, no wildcards)
 * and never confusable across kinds because the prefix is part of the branded schema.
 */
const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"

const randomToken = (length = 20): string => {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(length))
  let out = ""
  for (const byte of bytes) out += ALPHABET[byte & 31]
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
