import { createPrivateKey, createSign } from "node:crypto"
import { Effect, Redacted } from "effect"
import { z } from "zod"
import { ApiError } from "./ApiError.js"
import { apiHeaders, call, type GitHubAppOptions } from "./GitHubApp.js"

const b64url = (value: string | Buffer) => Buffer.from(value).toString("base64url")

/**
 * The app's JWT (RS256, GitHub's rules): issued a minute in the past against clock drift, valid for nine
 * minutes (GitHub refuses more than ten), `iss` the app id. It authenticates as the app, not as an
 * installation: it only ever goes to GitHub, to mint installation tokens.
 */
export const appJwt = (app: GitHubAppOptions, nowMs = Date.now()) => {
  const now = Math.floor(nowMs / 1000)
  const header = b64url(JSON.stringify({ alg: "RS256", typ: "JWT" }))
  const payload = b64url(JSON.stringify({ iat: now - 60, exp: now + 540, iss: app.appId }))
  const signer = createSign("RSA-SHA256")
  signer.update(`${header}.${payload}`)
  const key = createPrivateKey(Redacted.value(app.privateKey))
  return Redacted.make(`${header}.${payload}.${signer.sign(key).toString("base64url")}`)
}

/** `POST /app/installations/{id}/access_tokens`: 201 with the token and when it expires. */
const AccessToken = z.object({
  token: z.string().min(1),
  expires_at: z.string(),
  repositories: z.array(z.object({ id: z.number(), full_name: z.string() })).optional()
})

export interface InstallationToken {
  readonly token: Redacted.Redacted<string>
  readonly expiresAt: Date
}

/**
 * A short-lived installation token (GitHub: one hour) that reaches exactly one repository of the
 * installation, with contents and pull requests write. GitHub answers 404 for an installation it does not
 * know (or not of this app), 422 for a repository outside the installation, 401 for a bad app JWT.
 */
/** What a token may do; GitHub grants no more than the installation has. */
export type TokenPermissions = Readonly<Record<"contents" | "pull_requests" | "metadata", "read" | "write">>

/** The default: contents and pull requests write. A workspace's token gets less (ADR 0028). */
export const DEFAULT_PERMISSIONS: TokenPermissions = { contents: "write", pull_requests: "write", metadata: "read" }

export const mintInstallationToken = Effect.fn("GitHubAppToken.mint")(function* (
  app: GitHubAppOptions,
  installationId: number,
  repositoryId: number,
  permissions: Partial<TokenPermissions> = DEFAULT_PERMISSIONS
) {
  const jwt = yield* Effect.try({
    try: () => appJwt(app),
    catch: () => new ApiError({ code: "unavailable", message: "the GitHub App private key cannot sign (is it a PEM?)" })
  })
  const answer = yield* call(new URL(`/app/installations/${installationId}/access_tokens`, app.apiUrl).toString(), {
    method: "POST",
    headers: { ...apiHeaders(Redacted.value(jwt)), "content-type": "application/json" },
    body: JSON.stringify({
      repository_ids: [repositoryId],
      permissions
    })
  })
  const parsed = AccessToken.safeParse(answer.body)
  if (answer.status !== 201 || !parsed.success) {
    const code = answer.status === 404 ? "not_found" : answer.status === 422 ? "forbidden" : "unavailable"
    const why =
      answer.status === 404
        ? `GitHub knows no installation ${installationId} of this app`
        : answer.status === 422
          ? `repository ${repositoryId} is not in installation ${installationId}`
          : `GitHub did not mint an installation token (it answered ${answer.status})`
    return yield* new ApiError({ code, message: why })
  }
  return {
    token: Redacted.make(parsed.data.token),
    expiresAt: new Date(parsed.data.expires_at)
  } satisfies InstallationToken
})
