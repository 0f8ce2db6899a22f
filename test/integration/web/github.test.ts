import { createHmac, generateKeyPairSync, randomUUID } from "node:crypto"
import { Redacted } from "effect"
import type { BrowserContext, Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startFakeGitHub } from "../../src/index.js"
import { apiGet, newContext, startWebStack, type WebStack } from "./WebKit.js"

/**
 * The GitHub App in the web app (issue 15): a user signed in with GitHub picks installation → repository
 * on the new-project form (the default branch comes from GitHub), chats in task mode, and the chat shows
 * the pull request the task opened. GitHub is the fake, with a real git server behind it.
 */
// SAM keeps a user's GitHub token (to list repositories as them) only with a master key
process.env.SAM_MASTER_KEY ??= Buffer.alloc(32, 9).toString("base64")

const keys = generateKeyPairSync("rsa", {
  modulusLength: 2048,
  publicKeyEncoding: { type: "spki", format: "pem" },
  privateKeyEncoding: { type: "pkcs1", format: "pem" }
})
const client = { id: "Iv1.webclient", secret: "web-client-secret-value" }
const webhookSecret = "whsec-web-0123456789"
const github = await startFakeGitHub(client, { id: "6161", publicKey: keys.publicKey })
const acme = github.install({
  id: 8001,
  account: { login: "acme", id: 9801, type: "Organization" },
  repositories: [{ id: 881, name: "site", private: true, defaultBranch: "trunk" }],
  access: new Set(["ada"])
})
github.createRepository(acme, acme.repositories[0]!, { "README.md": "site\n" })

let stack: WebStack
let context: BrowserContext
let page: Page

const poll = <T>(fn: () => T | Promise<T>, timeout = 20_000) => expect.poll(fn, { timeout })

/** The OAuth flow against the fake, as the browser would go through it; the gateway's session cookie. */
const signInWithGitHub = async (user: { id: number; login: string; name: string }) => {
  const start = await fetch(`${stack.url}/api/v1/auth/github`, { redirect: "manual" })
  const authorize = new URL(start.headers.get("location") ?? "")
  const state = start.headers
    .getSetCookie()
    .map((c) => c.split(";")[0] ?? "")
    .find((c) => c.startsWith("sam_oauth_state="))
  const redirectUri = authorize.searchParams.get("redirect_uri") ?? ""
  const code = github.authorize(user, redirectUri, "read:user read:org")
  const done = await fetch(
    `${stack.url}${new URL(redirectUri).pathname}?code=${code}&state=${authorize.searchParams.get("state")}`,
    { redirect: "manual", headers: { cookie: state ?? "" } }
  )
  const session = done.headers
    .getSetCookie()
    .map((c) => c.split(";")[0] ?? "")
    .find((c) => c.startsWith("sam_session="))
  if (session === undefined) throw new Error(`no session after the OAuth flow (${done.status})`)
  return session.slice("sam_session=".length)
}

beforeAll(async () => {
  stack = await startWebStack({
    github: {
      clientId: client.id,
      clientSecret: Redacted.make(client.secret),
      webUrl: github.url,
      apiUrl: github.url,
      allowAny: true
    },
    githubApp: {
      appId: "6161",
      privateKey: Redacted.make(keys.privateKey),
      webhookSecret: Redacted.make(webhookSecret),
      apiUrl: github.url,
      webUrl: github.url
    }
  })
  const session = await signInWithGitHub({ id: 3301, login: "ada", name: "Ada" })
  // ada installed the app on acme: the installation webhook links her
  const raw = JSON.stringify({
    action: "created",
    installation: { id: acme.id, account: acme.account, app_id: 1, target_type: "Organization" },
    sender: { id: 3301, login: "ada" },
    repositories: []
  })
  const delivered = await fetch(`${stack.url}/api/v1/github/webhook`, {
    method: "POST",
    body: raw,
    headers: {
      "content-type": "application/json",
      "x-github-event": "installation",
      "x-github-delivery": randomUUID(),
      "x-hub-signature-256": `sha256=${createHmac("sha256", webhookSecret).update(raw).digest("hex")}`
    }
  })
  expect(delivered.status).toBe(200)
  context = await newContext(stack)
  await context.addCookies([{ name: "sam_session", value: session, url: stack.url }])
  page = await context.newPage()
}, 240_000)

afterAll(async () => {
  await stack?.close()
  await github.close()
}, 180_000)

describe("web app: GitHub repositories and pull requests", () => {
  it("creates a project from a picked repository, and a task's pull request is linked in the chat", async () => {
    await page.goto("/projects")
    const picker = page.getByTestId("github-repository")
    await poll(() => picker.locator("option").allTextContents()).toContain("acme/site (trunk, private)")
    await picker.selectOption(`${acme.id}:acme/site`)
    await page.fill("#p-name", "site")
    await Promise.all([page.waitForURL("**/projects/*/chat"), page.click("text=Create project")])
    const { projects } = await apiGet(stack, context, "/projects")
    expect(projects).toHaveLength(1)
    expect(projects[0]).toMatchObject({
      githubRepository: "acme/site",
      defaultBranch: "trunk",
      repoUrl: `${github.url}/acme/site.git`
    })

    await page.selectOption("#composer-mode", "task")
    await page.locator("#composer-text").fill("run echo 'from the browser' > PAGE.md")
    await page.locator("#composer-text").press("Control+Enter")
    const link = page.getByTestId("pull-request")
    await poll(() => link.count(), 60_000).toBe(1)
    expect(await link.getAttribute("href")).toBe(`${github.url}/acme/site/pull/1`)
    expect(github.pullRequests.get("acme/site")?.[0]).toMatchObject({ base: "trunk" })
  }, 120_000)
})
