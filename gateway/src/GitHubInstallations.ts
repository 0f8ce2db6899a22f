import { SqlClient } from "@effect/sql"
import { type Api, safeParseJson, type UserId } from "@sam/bus"
import { SecretBox } from "@sam/sql"
import { Effect, Redacted } from "effect"
import { z } from "zod"
import { ApiError } from "./ApiError.js"
import { GatewayConfig } from "./Config.js"
import { refreshUserToken, type UserToken } from "./GitHub.js"
import { apiHeaders, call } from "./GitHubApp.js"

/** GitHub's installation account (`installation.account`): a user or an organization. */
/** GitHub logins are letters, digits and dashes; whatever comes, a NUL would not fit a Postgres text column. */
const Login = z
  .string()
  .min(1)
  .max(100)
  .refine((login) => !login.includes("\0"), "a login has no NUL")
export const Account = z.object({
  login: Login,
  id: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  type: z.string()
})
export type Account = z.infer<typeof Account>
/** An installation as GitHub describes it in webhooks and in `GET /user/installations`. */
export const Installation = z.object({ id: z.number().int().positive(), account: Account.nullable() })
const UserInstallations = z.object({ total_count: z.number(), installations: z.array(z.unknown()) })
const Org = z.object({ login: Login })
const Repository = z.object({
  id: z.number().int().positive(),
  name: z.string(),
  full_name: z.string(),
  private: z.boolean(),
  owner: z.object({ login: z.string() }),
  default_branch: z.string()
})
const Repositories = z.object({ total_count: z.number(), repositories: z.array(z.unknown()) })

const PAGE = 100
/** Pages read at most per listing: a user in more than 1000 organisations is not a case to serve. */
const MAX_PAGES = 10

/** GitHub's account type as ours: anything that is not an organization is personal. */
const accountType = (account: Account) => (account.type.toLowerCase() === "organization" ? "organization" : "personal")

/**
 * Record an installation in the canonical table (a new one, or a re-install that clears the tombstone).
 * Idempotent; it grants nobody anything.
 */
export const upsertAccount = Effect.fn("GitHubInstallations.upsertAccount")(function* (
  installationId: number,
  account: Account
) {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    INSERT INTO github_installation_accounts
      (installation_id, account_type, account_id, account_name, normalized_account_name)
    VALUES (${installationId}, ${accountType(account)}, ${account.id}, ${account.login}, ${account.login.toLowerCase()})
    ON CONFLICT (installation_id) DO UPDATE SET
      account_type = excluded.account_type, account_id = excluded.account_id,
      account_name = excluded.account_name, normalized_account_name = excluded.normalized_account_name,
      updated_at = now(), uninstalled_at = NULL`.pipe(Effect.orDie)
})

export const link = Effect.fn("GitHubInstallations.link")(function* (userId: UserId, installationId: number) {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    INSERT INTO github_installation_links (user_id, installation_id) VALUES (${userId}, ${installationId})
    ON CONFLICT DO NOTHING`.pipe(Effect.orDie)
})

/** GitHub says the app was uninstalled: tombstone the installation and take it from every user. */
export const uninstalled = Effect.fn("GitHubInstallations.uninstalled")(function* (installationId: number) {
  const sql = yield* SqlClient.SqlClient
  yield* sql`DELETE FROM github_installation_links WHERE installation_id = ${installationId}`.pipe(Effect.orDie)
  yield* sql`
    UPDATE github_installation_accounts SET uninstalled_at = now(), updated_at = now()
    WHERE installation_id = ${installationId}`.pipe(Effect.orDie)
})

/** One user stops using an installation; the installation and everyone else's links stay. */
export const unlink = Effect.fn("GitHubInstallations.unlink")(function* (userId: UserId, installationId: number) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql`
    DELETE FROM github_installation_links WHERE user_id = ${userId} AND installation_id = ${installationId}
    RETURNING installation_id`.pipe(Effect.orDie)
  return rows.length > 0
})

/**
 * `installation.created`: the canonical row always (the sender need not be a SAM user); a link for the
 * sender when they are a SAM user and the installation is an organization's or their own account.
 */
export const created = Effect.fn("GitHubInstallations.created")(function* (
  installation: z.infer<typeof Installation>,
  sender: { readonly id: number }
) {
  if (installation.account === null) return false
  yield* upsertAccount(installation.id, installation.account)
  const sql = yield* SqlClient.SqlClient
  const users = yield* sql<{ id: UserId }>`SELECT id FROM users WHERE github_id = ${sender.id}`.pipe(Effect.orDie)
  const user = users[0]
  const own = accountType(installation.account) === "organization" || installation.account.id === sender.id
  if (user !== undefined && own) yield* link(user.id, installation.id)
  return true
})

/**
 * Keep the user's GitHub token for calls made as them, sealed; without a master key it is not kept. An
 * expiring token is kept with its refresh token and expiry, as one sealed JSON value (an older plain token
 * still opens).
 */
export const rememberToken = Effect.fn("GitHubInstallations.rememberToken")(function* (
  userId: UserId,
  token: UserToken
) {
  const sql = yield* SqlClient.SqlClient
  const stored = JSON.stringify({
    access: Redacted.value(token.accessToken),
    ...(token.refreshToken === undefined ? {} : { refresh: Redacted.value(token.refreshToken) }),
    ...(token.expiresAt === undefined ? {} : { expiresAt: token.expiresAt.toISOString() })
  })
  const sealed = yield* SecretBox.seal(stored).pipe(
    Effect.tapError((e) => Effect.logWarning(`GitHub token of ${userId} not kept: ${e.message}`)),
    Effect.option
  )
  if (sealed._tag === "None") return
  yield* sql`
    INSERT INTO github_user_tokens (user_id, sealed) VALUES (${userId}, ${sealed.value})
    ON CONFLICT (user_id) DO UPDATE SET sealed = excluded.sealed, updated_at = now()`.pipe(Effect.orDie)
})

const Stored = z.object({ access: z.string().min(1), refresh: z.string().optional(), expiresAt: z.string().optional() })

/** Renewed when it expires within this (a sync makes several calls with it). */
export const USER_TOKEN_REFRESH_MARGIN_MS = 5 * 60_000

/**
 * The user's GitHub token, renewed first with its refresh token when it expires soon (GitHub App user
 * tokens live eight hours unless the app opts out). A refresh GitHub refuses leaves the old token: the
 * caller's call then fails as GitHub says, and the next sign-in stores a fresh one.
 */
const userToken = Effect.fn("GitHubInstallations.userToken")(function* (userId: UserId) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ sealed: string }>`SELECT sealed FROM github_user_tokens WHERE user_id = ${userId}`.pipe(
    Effect.orDie
  )
  const row = rows[0]
  if (row === undefined) return undefined
  const opened = yield* SecretBox.open(row.sealed).pipe(Effect.option)
  if (opened._tag === "None") return undefined
  const parsed = opened.value.startsWith("{")
    ? safeParseJson(Stored, opened.value)
    : { success: true as const, data: { access: opened.value } as z.infer<typeof Stored> }
  if (!parsed.success) return undefined
  const stored = parsed.data
  const current = Redacted.make(stored.access)
  const expiresAt = stored.expiresAt === undefined ? undefined : new Date(stored.expiresAt)
  if (stored.refresh === undefined || expiresAt === undefined) return current
  if (expiresAt.getTime() - Date.now() > USER_TOKEN_REFRESH_MARGIN_MS) return current
  const config = yield* Effect.serviceOption(GatewayConfig)
  const github = config._tag === "Some" ? config.value.github : undefined
  if (github === undefined) return current
  return yield* refreshUserToken(github, Redacted.make(stored.refresh)).pipe(
    Effect.tap((renewed) => rememberToken(userId, renewed)),
    Effect.map((renewed) => renewed.accessToken),
    Effect.catchAll((e) =>
      Effect.logWarning(`GitHub token of ${userId} not renewed: ${e.message}`).pipe(Effect.as(current))
    )
  )
})

class GitHubRefused extends Error {}

/** Every page of a list endpoint, read as the user; a status other than 200 is a `GitHubRefused`. */
const pages = <T>(apiUrl: string, path: string, token: Redacted.Redacted<string>, items: (body: unknown) => T[]) =>
  Effect.gen(function* () {
    const all: T[] = []
    for (let page = 1; page <= MAX_PAGES; page++) {
      const url = new URL(path, apiUrl)
      url.searchParams.set("per_page", String(PAGE))
      url.searchParams.set("page", String(page))
      const answer = yield* call(url.toString(), { headers: apiHeaders(Redacted.value(token)) })
      if (answer.status !== 200) return yield* Effect.die(new GitHubRefused(`GET ${path} answered ${answer.status}`))
      const got = items(answer.body)
      all.push(...got)
      if (got.length < PAGE) break
    }
    return all
  })

/** The repositories of an installation GitHub lists to the user, each parsed by `schema` (others skipped). */
const listRepositories = <S extends z.ZodType>(
  apiUrl: string,
  installationId: number,
  token: Redacted.Redacted<string>,
  schema: S
) =>
  pages(apiUrl, `/user/installations/${installationId}/repositories`, token, (body) => {
    const parsed = Repositories.safeParse(body)
    if (!parsed.success) return []
    return parsed.data.repositories.flatMap((item) => {
      const repo = schema.safeParse(item)
      return repo.success ? [repo.data as z.output<S>] : []
    })
  })

/** A repository as GitHub lists it to a user, with what that user may do with it. */
const RepositoryWithPermissions = z.object({
  id: z.number().int().positive(),
  full_name: z.string(),
  permissions: z.object({ push: z.boolean().optional() }).partial().optional()
})

export type RepositoryAccess =
  | { readonly access: "write" | "read"; readonly repository: string }
  | { readonly access: "none"; readonly why: "no-token" | "not-listed" }

/**
 * What a user may do with one repository of an installation, as GitHub answers through their own token now: the
 * intersection of their access and the app's (ADR 0048). `write` when GitHub says they may push, `read` when it
 * lists the repository without that, `none` when it does not list it to them (or SAM holds no token of theirs).
 * Any other answer of GitHub's is `unavailable`.
 */
export const repositoryAccess = Effect.fn("GitHubInstallations.repositoryAccess")(function* (
  apiUrl: string,
  userId: UserId,
  installationId: number,
  repositoryId: number
) {
  const token = yield* userToken(userId)
  if (token === undefined) {
    return { access: "none", why: "no-token" } as RepositoryAccess
  }
  const listed = yield* listRepositories(apiUrl, installationId, token, RepositoryWithPermissions).pipe(
    Effect.map((repos) => repos.find((r) => r.id === repositoryId)),
    Effect.catchAllDefect((defect) =>
      defect instanceof GitHubRefused && /answered 40[34]$/.test(defect.message)
        ? Effect.succeed(undefined)
        : Effect.fail(
            new ApiError({
              code: "unavailable",
              message: `GitHub did not say what this user may do with the repository: ${defect instanceof Error ? defect.message : "no answer"}`
            })
          )
    )
  )
  if (listed === undefined) {
    return { access: "none", why: "not-listed" } as RepositoryAccess
  }
  return {
    access: listed.permissions?.push === true ? "write" : "read",
    repository: listed.full_name
  } as RepositoryAccess
})

/** `GET /user/installations/{id}/repositories` as the user: 2xx → access; 403/404 → none; else an error. */
const verifyAccess = (apiUrl: string, token: Redacted.Redacted<string>, installationId: number) =>
  Effect.gen(function* () {
    const url = new URL(`/user/installations/${installationId}/repositories`, apiUrl)
    url.searchParams.set("per_page", "1")
    const answer = yield* call(url.toString(), { headers: apiHeaders(Redacted.value(token)) })
    if (answer.status >= 200 && answer.status < 300) return true
    if (answer.status === 403 || answer.status === 404) return false
    return yield* Effect.die(new GitHubRefused(`installation ${installationId}: GitHub answered ${answer.status}`))
  })

/**
 * Sync what the user may use with GitHub, as the user: installations GitHub lists for them go in the
 * canonical table, and their own personal ones are linked; then shared-organisation discovery: the
 * canonical organisation installations of the organisations they belong to are candidates, each linked
 * only once GitHub confirms the user's access to it. One candidate's failure skips that candidate; any
 * other failure makes the sync `failed`, never the listing.
 */
export const sync = Effect.fn("GitHubInstallations.sync")(function* (apiUrl: string, userId: UserId) {
  const token = yield* userToken(userId)
  if (token === undefined) return "skipped" as const
  const sql = yield* SqlClient.SqlClient
  const run = Effect.gen(function* () {
    const me = yield* sql<{ githubId: string | null }>`SELECT github_id::text FROM users WHERE id = ${userId}`
    const githubId = Number(me[0]?.githubId ?? Number.NaN)
    const direct = yield* pages(apiUrl, "/user/installations", token, (body) => {
      const parsed = UserInstallations.safeParse(body)
      if (!parsed.success) return []
      return parsed.data.installations.flatMap((item) => {
        const one = Installation.safeParse(item)
        return one.success && one.data.account !== null ? [{ id: one.data.id, account: one.data.account }] : []
      })
    })
    for (const installation of direct) {
      yield* upsertAccount(installation.id, installation.account)
      if (accountType(installation.account) === "personal" && installation.account.id === githubId) {
        yield* link(userId, installation.id)
      }
    }
    const orgs = yield* pages(apiUrl, "/user/orgs", token, (body) =>
      Array.isArray(body)
        ? body.flatMap((item) => {
            const org = Org.safeParse(item)
            return org.success ? [org.data.login.toLowerCase()] : []
          })
        : []
    )
    if (orgs.length === 0) return "done" as const
    const candidates = yield* sql<{ installationId: number }>`
      SELECT a.installation_id::float8 AS installation_id FROM github_installation_accounts a
      WHERE a.account_type = 'organization' AND a.uninstalled_at IS NULL
        AND a.normalized_account_name IN ${sql.in(orgs)}
        AND NOT EXISTS (SELECT 1 FROM github_installation_links l
                        WHERE l.user_id = ${userId} AND l.installation_id = a.installation_id)`
    for (const { installationId } of candidates) {
      const verified = yield* verifyAccess(apiUrl, token, installationId).pipe(
        Effect.catchAllDefect((defect) =>
          Effect.logWarning(
            `shared-organisation discovery of ${installationId} for ${userId} failed`,
            String(defect)
          ).pipe(Effect.as(undefined))
        )
      )
      if (verified === true) yield* link(userId, installationId)
      if (verified === false)
        yield* Effect.logInfo(`installation ${installationId} not accessible to ${userId}: skipped`)
    }
    return "done" as const
  })
  return yield* run.pipe(
    Effect.catchAllDefect((defect) =>
      Effect.logWarning(`GitHub installation sync for ${userId} failed`, String(defect)).pipe(
        Effect.as("failed" as const)
      )
    ),
    Effect.catchAll((error) =>
      Effect.logWarning(`GitHub installation sync for ${userId} failed: ${error.message}`).pipe(
        Effect.as("failed" as const)
      )
    )
  )
})

export const list = Effect.fn("GitHubInstallations.list")(function* (userId: UserId) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ installationId: number; accountType: "organization" | "personal"; accountName: string }>`
    SELECT a.installation_id::float8 AS installation_id, a.account_type, a.account_name
    FROM github_installation_links l JOIN github_installation_accounts a USING (installation_id)
    WHERE l.user_id = ${userId} AND a.uninstalled_at IS NULL
    ORDER BY a.normalized_account_name, a.installation_id`.pipe(Effect.orDie)
  return rows.map((row) => ({ ...row })) satisfies Api.GitHubInstallation[]
})

/** The repositories of one of the user's installations that GitHub lists for the user. */
export const repositories = Effect.fn("GitHubInstallations.repositories")(function* (
  apiUrl: string,
  userId: UserId,
  installationId: number
) {
  const sql = yield* SqlClient.SqlClient
  const linked = yield* sql`
    SELECT 1 FROM github_installation_links l JOIN github_installation_accounts a USING (installation_id)
    WHERE l.user_id = ${userId} AND l.installation_id = ${installationId} AND a.uninstalled_at IS NULL`.pipe(
    Effect.orDie
  )
  if (linked.length === 0) {
    return yield* new ApiError({ code: "not_found", message: `no installation ${installationId} of yours` })
  }
  const token = yield* userToken(userId)
  if (token === undefined) {
    return yield* new ApiError({
      code: "forbidden",
      message: "SAM holds no GitHub token of yours: sign in with GitHub again"
    })
  }
  const repos = yield* listRepositories(apiUrl, installationId, token, Repository).pipe(
    Effect.catchAllDefect((defect) =>
      Effect.fail(
        new ApiError({
          code: defect instanceof GitHubRefused ? "forbidden" : "unavailable",
          message: `GitHub did not list the repositories: ${defect instanceof Error ? defect.message : "no answer"}`
        })
      )
    )
  )
  return repos.map(
    (repo): Api.GitHubRepository => ({
      id: repo.id,
      fullName: repo.full_name,
      name: repo.name,
      owner: repo.owner.login,
      private: repo.private,
      defaultBranch: repo.default_branch
    })
  )
})
