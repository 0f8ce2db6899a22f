import { generateKeyPairSync } from "node:crypto"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { GitHubApp, GitHubAppToken } from "@sam/gateway"
import { Effect, Redacted } from "effect"
import { afterAll } from "vitest"
import { startFakeGitHub } from "../../src/index.js"
import { tracked } from "../../src/TempDirs.js"

// As GitHub hands a private key out: PKCS#1 PEM.
const keys = generateKeyPairSync("rsa", {
  modulusLength: 2048,
  publicKeyEncoding: { type: "spki", format: "pem" },
  privateKeyEncoding: { type: "pkcs1", format: "pem" }
})
const github = await startFakeGitHub({ id: "Iv1.x", secret: "y" }, { id: "31337", publicKey: keys.publicKey })
afterAll(() => github.close())
github.install({
  id: 900,
  account: { login: "acme", id: 9900, type: "Organization" },
  repositories: [
    { id: 91, name: "api", private: true, defaultBranch: "main" },
    { id: 92, name: "web", private: true, defaultBranch: "main" }
  ],
  access: new Set()
})

const app = (privateKey: string, appId = "31337"): GitHubApp.GitHubAppOptions => ({
  appId,
  privateKey: Redacted.make(privateKey),
  webhookSecret: Redacted.make("s"),
  webUrl: github.url,
  apiUrl: github.url
})

describe("GitHub App installation tokens", () => {
  it.effect("an app JWT GitHub verifies mints a token for exactly one repository, expiring within the hour", () =>
    Effect.gen(function* () {
      const minted = yield* GitHubAppToken.mintInstallationToken(app(keys.privateKey), 900, 92)
      const token = Redacted.value(minted.token)
      expect(token).toMatch(/^ghs_/)
      expect(github.installationTokens.get(token)).toMatchObject({ installationId: 900, repositoryIds: [92] })
      expect(minted.expiresAt.getTime() - Date.now()).toBeGreaterThan(50 * 60_000)
      expect(minted.expiresAt.getTime() - Date.now()).toBeLessThanOrEqual(3600_000)
      // the redacted token prints as nothing
      expect(String(minted.token)).not.toContain(token)
      expect(JSON.stringify(minted)).not.toContain(token)
    })
  )

  it.effect("GitHub's refusals: another key, another app id, an unknown installation, a repository outside it", () =>
    Effect.gen(function* () {
      const other = generateKeyPairSync("rsa", {
        modulusLength: 2048,
        privateKeyEncoding: { type: "pkcs8", format: "pem" },
        publicKeyEncoding: { type: "spki", format: "pem" }
      }).privateKey
      const forged = yield* Effect.flip(GitHubAppToken.mintInstallationToken(app(other), 900, 91))
      expect(forged.code).toBe("unavailable")
      expect(forged.message).toContain("401")
      const wrongApp = yield* Effect.flip(GitHubAppToken.mintInstallationToken(app(keys.privateKey, "1"), 900, 91))
      expect(wrongApp.message).toContain("401")
      const unknown = yield* Effect.flip(GitHubAppToken.mintInstallationToken(app(keys.privateKey), 901, 91))
      expect(unknown.code).toBe("not_found")
      const outside = yield* Effect.flip(GitHubAppToken.mintInstallationToken(app(keys.privateKey), 900, 93))
      expect(outside.code).toBe("forbidden")
      const notPem = yield* Effect.flip(GitHubAppToken.mintInstallationToken(app("not a key"), 900, 91))
      expect(notPem.message).toContain("PEM")
      expect(notPem.message).not.toContain("not a key")
    })
  )

  it("configuration from the environment: off without an app id, the key from a file, half a configuration refused", () => {
    expect(GitHubApp.fromEnv({})).toBeUndefined()
    const dir = tracked(mkdtempSync(join(tmpdir(), "sam-gh-")))
    const file = join(dir, "app.pem")
    writeFileSync(file, keys.privateKey, { mode: 0o600 })
    const loaded = GitHubApp.fromEnv({
      SAM_GITHUB_APP_ID: "31337",
      SAM_GITHUB_APP_PRIVATE_KEY_FILE: file,
      SAM_GITHUB_WEBHOOK_SECRET: "whsec",
      SAM_GITHUB_API_URL: github.url
    })
    expect(loaded?.appId).toBe("31337")
    expect(Redacted.value(loaded?.privateKey ?? Redacted.make(""))).toBe(keys.privateKey)
    expect(String(loaded?.privateKey)).not.toContain("PRIVATE KEY")
    expect(() => GitHubApp.fromEnv({ SAM_GITHUB_APP_ID: "31337", SAM_GITHUB_WEBHOOK_SECRET: "w" })).toThrow(
      /SAM_GITHUB_APP_PRIVATE_KEY/
    )
    expect(() => GitHubApp.fromEnv({ SAM_GITHUB_APP_ID: "31337", SAM_GITHUB_APP_PRIVATE_KEY: "k" })).toThrow(
      /SAM_GITHUB_WEBHOOK_SECRET/
    )
  })
})
