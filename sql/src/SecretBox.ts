import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import { Config, Data, Effect, Option, Redacted } from "effect"

/**
 * Secrets at rest (design §9): AES-256-GCM with a 32-byte master key from configuration, `SAM_MASTER_KEY`
 * (base64) or `SAM_MASTER_KEY_FILE` (a file holding it; `sam up` generates one into its data directory). A sealed
 * value is `v1.<iv>.<ciphertext+tag>` in base64url, so it fits one text column and names its format.
 * A value is only ever opened where it is used: the control plane, at an agent's session start.
 */

export class SecretBoxError extends Data.TaggedError("SecretBoxError")<{
  readonly reason: "no-key" | "bad-key" | "corrupt"
  readonly message: string
}> {}

const keys = new Map<string, Buffer>()

const parseKey = (text: string, from: string) => {
  const key = Buffer.from(text.trim(), "base64")
  return key.length === 32
    ? Effect.succeed(key)
    : Effect.fail(new SecretBoxError({ reason: "bad-key", message: `${from} is not 32 bytes of base64` }))
}

/** The master key; a missing one is an error only when a secret is sealed or opened. */
export const masterKey = Effect.gen(function* () {
  const inline = yield* Config.option(Config.redacted("SAM_MASTER_KEY")).pipe(Effect.orDie)
  if (Option.isSome(inline)) return yield* parseKey(Redacted.value(inline.value), "SAM_MASTER_KEY")
  const file = yield* Config.option(Config.string("SAM_MASTER_KEY_FILE")).pipe(Effect.orDie)
  if (Option.isNone(file))
    return yield* new SecretBoxError({
      reason: "no-key",
      message: "no master key: set SAM_MASTER_KEY (32 bytes, base64) or SAM_MASTER_KEY_FILE"
    })
  const cached = keys.get(file.value)
  if (cached !== undefined) return cached
  const text = yield* Effect.try({
    try: () => readFileSync(file.value, "utf8"),
    catch: (e) => new SecretBoxError({ reason: "no-key", message: `cannot read SAM_MASTER_KEY_FILE: ${e}` })
  })
  const key = yield* parseKey(text, file.value)
  keys.set(file.value, key)
  return key
})

/** A new master key, base64: what `sam up` writes to `<data dir>/master.key` (0600) the first time. */
export const generateKey = () => randomBytes(32).toString("base64")

export const sealWith = (key: Buffer, plaintext: string) => {
  const iv = randomBytes(12)
  const cipher = createCipheriv("aes-256-gcm", key, iv)
  const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final(), cipher.getAuthTag()])
  return `v1.${iv.toString("base64url")}.${body.toString("base64url")}`
}

export const openWith = (key: Buffer, sealed: string) =>
  Effect.try({
    try: () => {
      const [version, iv, body] = sealed.split(".")
      if (version !== "v1" || iv === undefined || body === undefined) throw new Error("not a v1 sealed value")
      const bytes = Buffer.from(body, "base64url")
      const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(iv, "base64url"))
      decipher.setAuthTag(bytes.subarray(bytes.length - 16))
      return Buffer.concat([decipher.update(bytes.subarray(0, bytes.length - 16)), decipher.final()]).toString("utf8")
    },
    catch: () =>
      new SecretBoxError({ reason: "corrupt", message: "a stored secret cannot be opened with this master key" })
  })

export const seal = (plaintext: string) => Effect.map(masterKey, (key) => sealWith(key, plaintext))
export const open = (sealed: string) => Effect.flatMap(masterKey, (key) => openWith(key, sealed))
