import { copyFileSync, mkdirSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { Auth, type Gateway, LocalOwner } from "@sam/gateway"
import { Effect, ManagedRuntime } from "effect"
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core"
import { ensureBuilt } from "../../../web/build.js"
import { fiberDump } from "../../src/FiberDump.js"
import { GatewayUrl, makeGatewayEnv, tempDir } from "../../src/index.js"
import { processTree } from "../../src/ProcessTree.js"

const STOP_WITHIN_MS = 45_000

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..")

/** Where every run writes its screenshots: git-ignored, so a test run leaves the checkout clean. */
export const SCREENSHOTS = join(ROOT, ".sam", "screenshots")

/** The README's screenshots, rewritten only on purpose: `SAM_UPDATE_SCREENSHOTS=1`. */
export const DOC_SCREENSHOTS = join(ROOT, "docs", "screenshots")
const UPDATE_DOCS = process.env.SAM_UPDATE_SCREENSHOTS === "1"

/**
 * A real stack for browser tests: the control plane with real vm-agents and the demo agent, the
 * gateway serving the built web app, an owner account with a password, and Debian's Chromium.
 */
export const startWebStack = async (gateway: Partial<Gateway.GatewayOptions> = {}) => {
  const build = await ensureBuilt()
  const runtime = ManagedRuntime.make(makeGatewayEnv(gateway))
  const url = await runtime.runPromise(GatewayUrl)
  const dataDir = await tempDir("sam-web-owner-")
  const owner = await runtime.runPromise(LocalOwner.ensure(dataDir).pipe(Effect.provide(Auth.Default)))
  if (owner.newPassword === undefined) throw new Error("the owner account got no password")
  const browser = await chromium.launch({
    executablePath: process.env.SAM_CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-background-networking"]
  })
  mkdirSync(SCREENSHOTS, { recursive: true })
  if (UPDATE_DOCS) mkdirSync(DOC_SCREENSHOTS, { recursive: true })
  return {
    url,
    build,
    browser,
    password: owner.newPassword,
    runtime,
    close: async () => {
      const started = Date.now()
      await browser.close().catch(() => {})
      console.log(`web stack: browser closed after ${Date.now() - started} ms`)
      const stopped = await Promise.race([
        runtime.dispose().then(() => true),
        new Promise<false>((resolve) => setTimeout(() => resolve(false), STOP_WITHIN_MS).unref())
      ])
      if (stopped) return console.log(`web stack: stopped after ${Date.now() - started} ms`)
      // Seen before the gateway let go of connections that never end on their own (a half-sent
      // request, a WebSocket whose peer never answers the close frame: test/integration/gateway/
      // shutdown.test.ts). If it happens again, say so loudly, and leave no vm-agent or nats-server
      // of this stack running.
      const left = processTree().filter((p) => p.pid !== process.pid && /vm-agent|nats-server/.test(p.cmdline))
      console.error(
        `web stack: NOT stopped within ${STOP_WITHIN_MS} ms; killing what it started: ${left.map((p) => p.pid).join(", ")}`
      )
      console.error(`web stack: the fibers still alive:\n${fiberDump()}`)
      for (const p of left) {
        try {
          process.kill(p.pid, "SIGKILL")
        } catch {}
      }
    }
  }
}

export type WebStack = Awaited<ReturnType<typeof startWebStack>>

/**
 * Every page: the feed's WebSockets are recorded (`__samSockets`) and, while `__samBlockFeed` is
 * set, new ones are pointed at a path that refuses them: a test can drop the live connection and
 * keep it down as long as it likes, as a flaky network would.
 */
const FEED_SWITCH = `(() => {
  const Native = window.WebSocket
  window.__samSockets = []
  class Switchable extends Native {
    constructor(url, protocols) {
      super(window.__samBlockFeed ? String(url).replace("/api/v1/feed", "/api/v1/no-feed") : url, protocols)
      window.__samSockets.push(this)
    }
  }
  window.WebSocket = Switchable
})()`

export const newContext = async (stack: WebStack, options: Parameters<Browser["newContext"]>[0] = {}) => {
  const context = await stack.browser.newContext({
    baseURL: stack.url,
    viewport: { width: 1280, height: 800 },
    // The app's spinners and pulses stop (its reduced-motion rule): repainted without a GPU at every frame while
    // a session works, they took a large share of the two cores the suite shares.
    reducedMotion: "reduce",
    ...options
  })
  await context.addInitScript(FEED_SWITCH)
  return context
}

export const signIn = async (page: Page, stack: WebStack) => {
  await page.goto("/signin")
  await page.fill("#login", "owner")
  await page.fill("#password", stack.password)
  await Promise.all([page.waitForURL("**/projects"), page.click("button[type=submit]")])
}

/** The browser session's token (the HttpOnly cookie), to check what the page shows against the API. */
export const sessionToken = async (context: BrowserContext) =>
  (await context.cookies()).find((c) => c.name === "sam_session")?.value ?? ""

export const apiGet = async (stack: WebStack, context: BrowserContext, path: string) => {
  const response = await fetch(`${stack.url}/api/v1${path}`, {
    headers: { authorization: `Bearer ${await sessionToken(context)}` }
  })
  if (!response.ok) throw new Error(`GET ${path}: ${response.status} ${await response.text()}`)
  // biome-ignore lint/suspicious/noExplicitAny: a response body, checked field by field
  return (await response.json()) as any
}

export const shot = async (page: Page, name: string) => {
  const path = join(SCREENSHOTS, `${name}.png`)
  await page.screenshot({ path })
  if (UPDATE_DOCS) copyFileSync(path, join(DOC_SCREENSHOTS, `${name}.png`))
}

/** A local Git repository for a project. */
export const repoDir = async () => join(await tempDir("sam-web-repo-"), "repo")
