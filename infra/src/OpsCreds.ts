import { mkdir, writeFile } from "node:fs/promises"
import { dirname, join } from "node:path"
import { Credentials } from "@sam/bus"
import { Effect, Redacted } from "effect"
import { loadOrCreate } from "./NatsAuth.js"
import { StackError } from "./StackError.js"

/**
 * Write a `.creds` file for an operator's NATS CLI: full rights in the SAM account (streams,
 * consumers, KV, subjects), valid for `days`. It is a secret: the file is mode 0600.
 */
export const write = Effect.fn("OpsCreds.write")(function* (dataDir: string, out: string, days: number) {
  const auth = yield* loadOrCreate(join(dataDir, "nats"))
  const user = yield* Credentials.mintUser(auth.signing, "operator", Credentials.adminPermissions, {
    expiresInSeconds: days * 86_400
  }).pipe(Effect.mapError((e) => new StackError({ step: "creds", message: e.message, cause: e })))
  yield* Effect.tryPromise({
    try: async () => {
      await mkdir(dirname(out), { recursive: true })
      await writeFile(out, Redacted.value(user.creds), { mode: 0o600 })
    },
    catch: (cause) => new StackError({ step: "creds", message: `cannot write ${out}: ${cause}`, cause })
  })
  return { file: out, expiresAt: user.expiresAt, publicKey: user.publicKey }
})
