import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit } from "effect"
import { SecretBox } from "../src/index.js"

const withKey = (key: string | undefined) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(key === undefined ? [] : [["SAM_MASTER_KEY", key]])))

describe("SecretBox", () => {
  const key = SecretBox.generateKey()

  it.effect("seals with a fresh IV each time and opens what it sealed", () =>
    Effect.gen(function* () {
      const a = yield* SecretBox.seal("sk-ant-secret")
      const b = yield* SecretBox.seal("sk-ant-secret")
      expect(a).toMatch(/^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/)
      expect(a).not.toBe(b)
      expect(a).not.toContain("sk-ant-secret")
      expect(yield* SecretBox.open(a)).toBe("sk-ant-secret")
    }).pipe(withKey(key))
  )

  it.effect("refuses a value tampered with, or sealed under another key", () =>
    Effect.gen(function* () {
      const sealed = yield* SecretBox.seal("value").pipe(withKey(key))
      const [v, iv, body] = sealed.split(".")
      // one character of the ciphertext changed, always to another (it once put back the same one, 1 time in 64)
      const at = body!.length - 2
      const flipped = `${v}.${iv}.${body!.slice(0, at)}${body![at] === "A" ? "B" : "A"}${body!.slice(at + 1)}`
      expect(flipped).not.toBe(sealed)
      const tampered = yield* Effect.exit(SecretBox.open(flipped).pipe(withKey(key)))
      expect(Exit.isFailure(tampered)).toBe(true)
      const other = yield* Effect.exit(SecretBox.open(sealed).pipe(withKey(SecretBox.generateKey())))
      expect(Exit.isFailure(other)).toBe(true)
    })
  )

  it.effect("without a master key it fails with a reason, and a short key is refused", () =>
    Effect.gen(function* () {
      const none = yield* Effect.flip(SecretBox.seal("x").pipe(withKey(undefined)))
      expect(none.reason).toBe("no-key")
      const short = yield* Effect.flip(SecretBox.seal("x").pipe(withKey(Buffer.alloc(16).toString("base64"))))
      expect(short.reason).toBe("bad-key")
    })
  )
})
