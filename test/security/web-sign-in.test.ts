import { request } from "node:http"
import type { BrowserContext, Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { newContext, startWebStack, type WebStack } from "../integration/web/WebKit.js"
import { makePasswordUser } from "./SecurityKit.js"

/**
 * The web page's sign-in is throttled by the browser's address, not by the web server's own loopback call to
 * the API: many wrong sign-ins through /signin from one address lock out that address, and nobody else.
 */
let stack: WebStack
let context: BrowserContext
let page: Page

/** The attacker's own address: Linux answers for all of 127.0.0.0/8 on loopback, the browser is on 127.0.0.1. */
const ATTACKER = "127.0.0.2"

beforeAll(async () => {
  // A lock that outlasts the test: once the attacker's address is locked, it stays locked.
  stack = await startWebStack({ loginThrottle: { baseDelayMs: 10 * 60_000 } })
  await stack.runtime.runPromise(makePasswordUser("victim", "victim-password-1"))
  context = await newContext(stack)
  page = await context.newPage()
}, 240_000)

afterAll(async () => {
  await stack?.close()
}, 180_000)

/** One request from the attacker's address, as a browser without JavaScript sends it; the page's status and text. */
const fromAttacker = (method: "GET" | "POST", path: string, form?: Record<string, string>) =>
  new Promise<{ readonly status: number; readonly text: string }>((resolve, reject) => {
    const body = form === undefined ? undefined : new URLSearchParams(form).toString()
    const headers: Record<string, string> =
      body === undefined
        ? {}
        : {
            "content-type": "application/x-www-form-urlencoded",
            "content-length": String(Buffer.byteLength(body)),
            origin: stack.url
          }
    const sent = request(new URL(path, stack.url), { method, headers, localAddress: ATTACKER }, (response) => {
      let text = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => {
        text += chunk
      })
      response.on("end", () => resolve({ status: response.statusCode ?? 0, text }))
    })
    sent.on("error", reject)
    sent.end(body)
  })

describe("security: sign-in through the web page", () => {
  it("many wrong sign-ins from one address lock out that address, not everyone's sign-in", async () => {
    const form = await fromAttacker("GET", "/signin")
    expect(form.status).toBe(200)
    const action = /<form[^>]*action="([^"]+)"/.exec(form.text)?.[1]?.replaceAll("&amp;", "&") ?? ""
    expect(action).toContain("qaction=")
    const signInAs = (login: string, password: string) => fromAttacker("POST", `/signin${action}`, { login, password })

    // Made-up logins, so only the address's count grows (each login's own stays under its limit).
    const statuses: Array<number> = []
    for (let i = 0; i < 40 && statuses.at(-1) !== 429; i++)
      statuses.push((await signInAs(`nobody-${i}`, "guess")).status)
    expect(statuses.at(-1), `the web page's answers to 40 wrong sign-ins: ${statuses.join(" ")}`).toBe(429)
    expect(statuses.filter((s) => s === 401).length).toBeGreaterThanOrEqual(20)
    // The attacker's address stays locked, whatever the login and password.
    const again = await signInAs("victim", "victim-password-1")
    expect(again.status).toBe(429)
    expect(again.text).toContain("Too many attempts")

    // Another person, from another address, signs in through the same page with the right password.
    await page.goto("/signin")
    await page.fill("#login", "victim")
    await page.fill("#password", "victim-password-1")
    await page.click("button[type=submit]")
    await Promise.race([page.waitForURL("**/projects"), page.locator("#signin-error").waitFor()])
    expect({
      path: new URL(page.url()).pathname,
      error: await page.locator("#signin-error").allTextContents()
    }).toEqual({ path: "/projects", error: [] })
  })
})
