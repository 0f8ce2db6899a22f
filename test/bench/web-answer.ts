/**
 * Benchmark: a message sent from the browser until the agent's answer is on the page, on a warm node (the stack of
 * the browser tests: the control plane, real vm-agents and the demo agent, the gateway serving the built app,
 * Debian's Chromium headless). The baseline, measured in the same run and alternating with it: the same request
 * from Node (`POST …/tasks`, then a `FeedClient` that follows the task's session once `session.opened` names it,
 * as the page does), so the difference is what the browser and the page add. Each chat is stopped after its
 * answer (a node holds four). Run: `node --import tsx test/bench/web-answer.ts [rounds]`. Rewrites the
 * "Web app: a message's answer" section of docs/benchmarks.md.
 */
import { cpus } from "node:os"
import { join } from "node:path"
import { Auth, Gateway, LocalOwner } from "@sam/gateway"
import { FeedClient, framesOf } from "@sam/gateway/client"
import { Effect, Logger, LogLevel } from "effect"
import { chromium, type Page } from "playwright-core"
import { ensureBuilt } from "../../web/build.js"
import { makeRepo } from "../src/Repo.js"
import { startTestStack } from "../src/TestStack.js"
import { compiledAgents, controlPlaneOn, scratch, writeSection } from "./BenchReport.js"
import { warmAgentBooted } from "./WarmAgent.js"

const ROUNDS = Number(process.argv[2] ?? 8)
const HOW = compiledAgents()
const now = () => performance.timeOrigin + performance.now()
const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
}

const running = await startTestStack()
const stack = running.stack
const env = controlPlaneOn(stack)

const ANSWER_CLOCK = `(() => {
  const answer = () => window.__answer && window.__answer.word ? window.__answer : undefined
  document.addEventListener("keydown", (event) => {
    const a = answer()
    if (a && a.sent === undefined && event.key === "Enter" && event.ctrlKey) a.sent = performance.now()
  }, true)
  const Native = window.WebSocket
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args)
      this.addEventListener("message", (event) => {
        const a = answer()
        if (!a || a.frame !== undefined || !String(event.data).includes(a.word)) return
        const frame = JSON.parse(String(event.data))
        const events = frame.type === "session.event" ? [frame] : frame.type === "session.events" ? frame.events : []
        if (events.some((e) => e.event && e.event.type === "text" && String(e.event.text).includes(a.word))) a.frame = performance.now()
      })
    }
  }
  new MutationObserver(() => {
    const a = answer()
    if (!a || a.shown !== undefined) return
    for (const el of document.querySelectorAll("[data-testid=timeline] [data-kind=text]"))
      if (el.textContent.includes(a.word)) a.shown = performance.now()
  }).observe(document, { childList: true, subtree: true, characterData: true })
})()`

const bench = (url: string, password: string, repo: string) =>
  Effect.promise(async () => {
    const chromeBrowser = await chromium.launch({
      executablePath: process.env.SAM_CHROMIUM ?? "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox", "--disable-background-networking"]
    })
    try {
      // as the browser tests: reduced motion, so spinners are not repainted without a GPU at every frame
      const context = await chromeBrowser.newContext({
        baseURL: url,
        viewport: { width: 1280, height: 800 },
        reducedMotion: "reduce"
      })
      // The three instants on the page's own clock (Playwright's events and waits add their own delays): the key
      // that sends, the first feed frame with the answer's text, and the answer's text in the timeline.
      await context.addInitScript(ANSWER_CLOCK)
      const page = await context.newPage()
      await page.goto("/signin")
      await page.fill("#login", "owner")
      await page.fill("#password", password)
      await Promise.all([page.waitForURL("**/projects"), page.click("button[type=submit]")])
      const token = (await context.cookies()).find((c) => c.name === "sam_session")?.value ?? ""
      const api = async (method: string, path: string, body?: unknown) => {
        const response = await fetch(`${url}/api/v1${path}`, {
          method,
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          ...(body === undefined ? {} : { body: JSON.stringify(body) })
        })
        if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`)
        // biome-ignore lint/suspicious/noExplicitAny: a response body, read field by field
        return (await response.json()) as any
      }
      const project = await api("POST", "/projects", { name: "bench", repoUrl: repo })
      const projectId: string = project.id

      /** From the browser: Send pressed → the answer's frame reaches the page → its text is on the page. */
      const fromBrowser = async (p: Page, word: string) => {
        await p.goto(`/projects/${projectId}/chat`)
        await p.locator("#composer-text").fill(`say ${word}`)
        await p.waitForLoadState("networkidle")
        await p.evaluate(`window.__answer = { word: ${JSON.stringify(word)} }`)
        await p.locator("#composer-text").press("Control+Enter")
        await p.getByTestId("timeline").locator("[data-kind=text]", { hasText: word }).waitFor({ timeout: 60_000 })
        const at = (await p.evaluate("window.__answer")) as { sent: number; frame: number; shown: number }
        return {
          total: at.shown - at.sent,
          frame: at.frame - at.sent,
          page: at.shown - at.frame,
          sessionId: /sess_[0-9a-z]+/.exec(p.url())?.[0]
        }
      }

      /** From Node: the same request, and the session followed from `session.opened`, as the page does. */
      const fromNode = (word: string) =>
        new Promise<{ total: number; sessionId: string }>((resolve, reject) => {
          const sent = now()
          let sessionId = ""
          let taskId = ""
          const client = new FeedClient({
            baseUrl: url,
            token,
            projects: [projectId],
            onFrame: (frame) => {
              if (frame.type === "event" && frame.eventType === "session.opened") {
                const body = frame.body as { sessionId?: string; taskId?: string }
                if (body.taskId === taskId && body.sessionId !== undefined && sessionId === "") {
                  sessionId = body.sessionId
                  client.subscribe({ sessions: [{ sessionId, afterSeq: 0 }] })
                }
              }
              for (const e of framesOf(frame)) {
                if (e.type !== "session.event" || e.sessionId !== sessionId) continue
                const event = e.event as { type?: string; text?: string }
                if (event.type === "text" && event.text?.includes(word) === true) {
                  client.close()
                  resolve({ total: now() - sent, sessionId })
                }
              }
            }
          })
          const open = () => {
            if (client.stats.connections === 0) return void setTimeout(open, 10)
            api("POST", `/projects/${projectId}/tasks`, { prompt: `say ${word}`, agent: "demo", mode: "conversation" })
              .then((task) => {
                taskId = task.id
              })
              .catch(reject)
          }
          open()
        })

      const stop = (sessionId: string | undefined) =>
        sessionId === undefined
          ? Promise.resolve()
          : api("POST", `/sessions/${sessionId}/stop`, {}).catch(() => undefined)

      // Warm-up: the first task starts a node and loads the page's code.
      await stop((await fromBrowser(page, `warm${Date.now()}`)).sessionId)
      await stop((await fromNode(`warmnode${Date.now()}`)).sessionId)
      const browser: Array<{ total: number; frame: number; page: number }> = []
      const node: Array<number> = []
      // Each round starts as a message usually does: with the node's warm agent booted (ADR 0055), not while the one
      // the last round took is replaced (a second after its workspace's create, then its boot).
      const warm = () => Effect.runPromise(warmAgentBooted)
      for (let i = 0; i < ROUNDS; i++) {
        await warm()
        const b = await fromBrowser(page, `answer${i}x${Date.now() % 1_000_000}`)
        browser.push(b)
        await stop(b.sessionId)
        await warm()
        const n = await fromNode(`nodeanswer${i}x${Date.now() % 1_000_000}`)
        node.push(n.total)
        await stop(n.sessionId)
      }
      const ms = (v: number) => v.toFixed(0)
      const row = (name: string, values: ReadonlyArray<number>) =>
        `| ${name} | ${ms(percentile(values, 50))} | ${ms(percentile(values, 90))} | ${ms(Math.min(...values))}–${ms(Math.max(...values))} |`
      const section = [
        "## Web app: a message's answer",
        "",
        `Measured ${new Date().toISOString().slice(0, 16)} UTC by \`${HOW}node --import tsx test/bench/web-answer.ts ${ROUNDS}\``,
        `on this machine (${cpus().length} cores, shared with other work; figures vary run to run): the browser tests' stack`,
        "(control plane, vm-agents and the demo agent on the host runtime, the gateway serving `web/dist`), Debian's",
        "Chromium headless at 1280×800 with reduced motion, one warm node. A new chat's message `say <word>`, until the",
        "answer's text is on the page; alternating with the same request from Node, which follows the task's session from",
        "its `session.opened` over the feed (`FeedClient`) as the page does. Each chat is stopped after its answer, and",
        "each message waits for the node's warm agent to have booted (ADR 0055), as one sent a while after the last does.",
        "The browser's instants are taken by the page itself (`performance.now()`): the Ctrl+Enter that sends, the first",
        "feed message with the answer's text, the answer's text in the timeline (a mutation observer).",
        "",
        "| path | p50 ms | p90 ms | range ms |",
        "|---|---:|---:|---:|",
        row("Node: `POST …/tasks` → the answer's text at the feed client", node),
        row(
          "browser: Send → the answer's text on the page",
          browser.map((b) => b.total)
        ),
        row(
          "browser: Send → the answer's frame at the page's socket",
          browser.map((b) => b.frame)
        ),
        row(
          "browser: the answer's frame → its text on the page",
          browser.map((b) => b.page)
        ),
        "",
        `Added by the browser and the page (p50 of the browser's path less the Node client's): ${ms(
          percentile(
            browser.map((b) => b.total),
            50
          ) - percentile(node, 50)
        )} ms.`,
        ""
      ].join("\n")
      await Effect.runPromise(writeSection("Web app: a message's answer", section))
    } finally {
      await chromeBrowser.close()
    }
  })

try {
  await Effect.runPromise(
    Effect.gen(function* () {
      yield* Effect.promise(() => ensureBuilt())
      const { url } = yield* Gateway.start({ host: "127.0.0.1", port: 0, natsUrl: stack.natsUrl })
      const owner = yield* LocalOwner.ensure(yield* scratch("sam-bench-owner-")).pipe(Effect.provide(Auth.Default))
      if (owner.newPassword === undefined) throw new Error("the owner account got no password")
      const repo = makeRepo(join(yield* scratch("sam-bench-answer-"), "repo"))
      yield* bench(url, owner.newPassword, repo)
    }).pipe(Effect.scoped, Effect.provide(env), Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)))
  )
} finally {
  await running.close()
}
