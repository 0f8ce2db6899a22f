import { createHmac, timingSafeEqual } from "node:crypto"
import { readFileSync } from "node:fs"
import { Effect, Redacted } from "effect"
import { ApiError } from "./ApiError.js"

/**
 * The GitHub App of a deployment (issue 15): its id and private key (to sign the app's JWT and mint
 * installation tokens) and the webhook secret (to verify deliveries). The same app's client id and
 * secret are the OAuth sign-in's (`SAM_GITHUB_CLIENT_ID` / `SAM_GITHUB_CLIENT_SECRET`).
 */
export interface GitHubAppOptions {
  readonly appId: string
  /** PEM (PKCS#1 as GitHub hands it out, or PKCS#8) */
  readonly privateKey: Redacted.Redacted<string>
  readonly webhookSecret: Redacted.Redacted<string>
  /** the REST API: https://api.github.com */
  readonly apiUrl: string
  /** the app's URL name, for its install page `<webUrl>/apps/<slug>/installations/new` */
  readonly slug?: string
  /** where users install apps: https://github.com */
  readonly webUrl: string
}

/**
 * From `SAM_GITHUB_APP_ID`, `SAM_GITHUB_APP_PRIVATE_KEY` (or `SAM_GITHUB_APP_PRIVATE_KEY_FILE`),
 * `SAM_GITHUB_WEBHOOK_SECRET` and optionally `SAM_GITHUB_APP_SLUG` (for the install link); undefined (the app is off) without an app id. Half a configuration is
 * refused at start-up, naming what is missing, rather than failing at the first webhook.
 */
export const fromEnv = (env: NodeJS.ProcessEnv): GitHubAppOptions | undefined => {
  const appId = env.SAM_GITHUB_APP_ID
  if (appId === undefined || appId === "") return undefined
  const file = env.SAM_GITHUB_APP_PRIVATE_KEY_FILE
  const privateKey = env.SAM_GITHUB_APP_PRIVATE_KEY ?? (file === undefined ? undefined : readFileSync(file, "utf8"))
  const webhookSecret = env.SAM_GITHUB_WEBHOOK_SECRET
  const missing = [
    ...(privateKey === undefined ? ["SAM_GITHUB_APP_PRIVATE_KEY (or SAM_GITHUB_APP_PRIVATE_KEY_FILE)"] : []),
    ...(webhookSecret === undefined || webhookSecret === "" ? ["SAM_GITHUB_WEBHOOK_SECRET"] : [])
  ]
  if (privateKey === undefined || webhookSecret === undefined || missing.length > 0) {
    throw new Error(`SAM_GITHUB_APP_ID is set but ${missing.join(" and ")} is not`)
  }
  return {
    appId,
    privateKey: Redacted.make(privateKey),
    webhookSecret: Redacted.make(webhookSecret),
    apiUrl: env.SAM_GITHUB_API_URL ?? "https://api.github.com",
    webUrl: env.SAM_GITHUB_URL ?? "https://github.com",
    ...(env.SAM_GITHUB_APP_SLUG === undefined || env.SAM_GITHUB_APP_SLUG === ""
      ? {}
      : { slug: env.SAM_GITHUB_APP_SLUG })
  }
}

/** `X-Hub-Signature-256` is `sha256=` and the hex HMAC of the raw body under the webhook secret. */
export const signature = (secret: string, body: string | Buffer) =>
  `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`

/** Constant-time: compares the whole header with the expected one, whatever it holds. */
export const verifySignature = (secret: Redacted.Redacted<string>, body: Buffer, header: string | undefined) => {
  if (header === undefined) return false
  const expected = Buffer.from(signature(Redacted.value(secret), body))
  const actual = Buffer.from(header)
  return expected.length === actual.length && timingSafeEqual(expected, actual)
}

export const apiHeaders = (token: string) => ({
  accept: "application/vnd.github+json",
  authorization: `Bearer ${token}`,
  "x-github-api-version": "2022-11-28",
  "user-agent": "sam-gateway"
})

export interface Answer {
  readonly status: number
  readonly body: unknown
}

/** One call to GitHub's REST API; no answer at all is `unavailable`, any status is the caller's to judge. */
export const call = (url: string, init: RequestInit) =>
  Effect.tryPromise({
    try: async (): Promise<Answer> => {
      const response = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) })
      const text = await response.text()
      let body: unknown = null
      try {
        body = text === "" ? null : JSON.parse(text)
      } catch {
        body = null
      }
      return { status: response.status, body }
    },
    catch: () => new ApiError({ code: "unavailable", message: "GitHub did not answer; try again" })
  }).pipe(Effect.withSpan("GitHubApp.call"))
