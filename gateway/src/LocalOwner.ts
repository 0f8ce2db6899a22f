import { randomBytes } from "node:crypto"
import { chmod, readFile, rm, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { makeId, type UserId } from "@sam/bus"
import { Effect } from "effect"
import { Auth, hashPassword } from "./Auth.js"
import * as Revocation from "./Revocation.js"

export const OWNER_LOGIN = "owner"

export interface LocalOwner {
  readonly userId: UserId
  /** set only when the account was given a password now: print it once, it is stored nowhere */
  readonly newPassword?: string
  /** the file holding an API token for the `sam` CLI on this machine (mode 0600) */
  readonly cliTokenFile: string
}

const readText = (path: string) =>
  Effect.promise(() =>
    readFile(path, "utf8").then(
      (text) => text.trim(),
      () => undefined
    )
  )

/**
 * The local owner account of a one-machine installation (design §9): created on the first `up`,
 * with login `owner` and a generated password returned once. The `sam` CLI on this machine signs
 * in with an API token kept in `<dataDir>/cli.token`; it is re-created if it was revoked.
 */
export const ensure = Effect.fn("LocalOwner.ensure")(function* (dataDir: string) {
  const sql = yield* SqlClient.SqlClient
  const auth = yield* Auth
  const ownerFile = join(dataDir, "owner.json")
  const recorded = yield* readText(ownerFile)
  const userId = ((recorded === undefined ? undefined : (JSON.parse(recorded) as { userId?: string }).userId) ??
    makeId("user")) as UserId
  yield* sql`
    INSERT INTO users (id, display_name, login) VALUES (${userId}, 'Local owner', ${OWNER_LOGIN})
    ON CONFLICT (id) DO UPDATE SET login = coalesce(users.login, excluded.login)`
  if (recorded === undefined) {
    yield* Effect.promise(() =>
      writeFile(ownerFile, JSON.stringify({ userId, createdAt: new Date().toISOString() }), { mode: 0o600 })
    )
  }
  let newPassword: string | undefined
  const [row] = yield* sql<{ passwordHash: string | null }>`SELECT password_hash FROM users WHERE id = ${userId}`
  if (row?.passwordHash === null || row === undefined) {
    newPassword = randomBytes(18).toString("base64url")
    yield* sql`UPDATE users SET password_hash = ${yield* hashPassword(newPassword)} WHERE id = ${userId}`
  }
  const cliTokenFile = join(dataDir, "cli.token")
  const existing = yield* readText(cliTokenFile)
  const usable =
    existing === undefined
      ? false
      : yield* auth.verify(existing).pipe(
          Effect.map((p) => p.userId === userId),
          Effect.orElseSucceed(() => false)
        )
  if (!usable) {
    const created = yield* auth.createToken(userId, { name: "sam CLI on this machine" })
    yield* Effect.promise(() => writeFile(cliTokenFile, `${created.token}\n`, { mode: 0o600 }))
  }
  return { userId, cliTokenFile, ...(newPassword === undefined ? {} : { newPassword }) } satisfies LocalOwner
})

/**
 * Set a new password for the local owner (`sam owner password`); returned once. Whoever signed in with the
 * old one is signed out: the owner's sign-in sessions end with it, and with the bus (`Nats`, when given) their
 * open feed connections close on every gateway, as a sign-out closes them. The owner's API tokens stay.
 */
export const resetPassword = Effect.fn("LocalOwner.resetPassword")(function* () {
  const sql = yield* SqlClient.SqlClient
  const password = randomBytes(18).toString("base64url")
  const hash = yield* hashPassword(password)
  const changed = yield* sql.withTransaction(
    Effect.gen(function* () {
      const [owner] = yield* sql<{ id: UserId }>`
        UPDATE users SET password_hash = ${hash} WHERE login = ${OWNER_LOGIN} RETURNING id`
      if (owner === undefined) return undefined
      const sessions = yield* sql<{ id: string }>`
        UPDATE user_sessions SET revoked_at = now()
        WHERE user_id = ${owner.id} AND revoked_at IS NULL AND expires_at > now() RETURNING id`
      return { userId: owner.id, sessions: sessions.map((row) => row.id) }
    })
  )
  if (changed === undefined) return undefined
  yield* Revocation.announce(
    changed.sessions.map((credentialId) => ({
      userId: changed.userId,
      credentialId,
      reason: "the password was changed"
    }))
  )
  return password
})

export const PASSWORD_FILE = "owner-password"

/**
 * Hand a new owner password to the person starting SAM without leaving it in a log: on a terminal
 * it is to be shown once (and an older password file, now stale, is removed); otherwise (output to
 * a file, a service manager's journal, CI) it is written to `<dataDir>/owner-password` with mode
 * 0600, and only that path may be printed.
 */
export const presentPassword = Effect.fn("LocalOwner.presentPassword")(function* (
  password: string,
  dataDir: string,
  terminal: boolean
) {
  const file = join(dataDir, PASSWORD_FILE)
  if (terminal) {
    yield* Effect.promise(() => rm(file, { force: true }))
    return { _tag: "Show", password } as const
  }
  yield* Effect.promise(async () => {
    await writeFile(file, `${password}\n`, { mode: 0o600 })
    await chmod(file, 0o600)
  })
  return { _tag: "Saved", file } as const
})
