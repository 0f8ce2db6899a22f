/**
 * Benchmark: the web app's chat page in Debian's Chromium (headless). (1) JavaScript loaded and run
 * before the first interaction, on a new chat and on a long session; (2) time to a usable chat view
 * of a session with 10,000 transcript events (navigation → its last item rendered, the composer
 * ready); (3) the latency an event on the bus takes to become text on the page, against a
 * `FeedClient` in Node following the same session in the same run (so the difference is what the
 * browser, the page's timeline and its rendering add). The transcript rows are inserted as the
 * session actor would have written them; live events are published straight onto the session's
 * SAM_EVT subject. Run: `node --import tsx test/bench/web-chat.ts [events]`. Rewrites the "Web app"
 * section of docs/benchmarks.md.
 */
import { cpus } from "node:os"
import { SqlClient } from "@effect/sql"
import { Domain, encode, makeId, Nats, type UserId } from "@sam/bus"
import { Auth, Gateway } from "@sam/gateway"
import { FeedClient } from "@sam/gateway/client"
import { Migrations } from "@sam/sql"
import { Effect } from "effect"
import { chromium } from "playwright-core"
import { ensureBuilt } from "../../web/build.js"
import { runOnStack, writeSection } from "./BenchReport.js"

const EVENTS = Number(process.argv[2] ?? 10_000)
const LATENCY_EVENTS = 100
const now = () => performance.timeOrigin + performance.now()
const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
}

/** One turn of ten transcript entries: the prompt, a thought, a plan, a tool call and its end, text, the end. */
const turn = (n: number): Array<Record<string, unknown>> => [
  { type: "prompt-started", text: `step ${n}: run the tests and say what fails` },
  { type: "thought", text: `Thinking about step ${n}.` },
  {
    type: "plan",
    entries: [
      { content: "Read", status: "completed", priority: "medium" },
      { content: "Test", status: "in_progress", priority: "medium" }
    ]
  },
  { type: "tool-call", toolCallId: `t${n}`, title: "pnpm test", kind: "execute", status: "in_progress", content: [] },
  {
    type: "tool-call-update",
    toolCallId: `t${n}`,
    title: null,
    status: "completed",
    content: [{ type: "content", content: { type: "text", text: "ok 12 tests\n" } }],
    rawOutput: { exitCode: 0 }
  },
  { type: "text", text: `Step ${n}: the **tests** pass. ` },
  { type: "text", text: "Here is `what` I found, " },
  { type: "text", text: "in a few words. " },
  { type: "text", text: `Turn ${n} done.` },
  { type: "turn-ended", stopReason: "end_turn" }
]

const main = Effect.gen(function* () {
  yield* Migrations.migrate()
  const sql = yield* SqlClient.SqlClient
  const nats = yield* Nats
  const userId = makeId("user") as UserId
  const projectId = makeId("proj")
  const sessionId = makeId("sess")
  yield* sql`INSERT INTO users (id, display_name) VALUES (${userId}, 'bench')`
  yield* sql`INSERT INTO projects (id, owner_id, name, repo_url) VALUES (${projectId}, ${userId}, 'bench', 'file:///b')`
  yield* sql`INSERT INTO project_members (project_id, user_id, role) VALUES (${projectId}, ${userId}, 'owner')`
  yield* sql`INSERT INTO sessions (id, project_id, agent) VALUES (${sessionId}, ${projectId}, 'demo')`
  const entries = Array.from({ length: Math.ceil(EVENTS / 10) }, (_, i) => turn(i + 1))
    .flat()
    .slice(0, EVENTS)
  for (let from = 0; from < entries.length; from += 1000) {
    const rows = entries.slice(from, from + 1000).map((event, i) => ({
      session_id: sessionId,
      seq: from + i + 1,
      type: String(event.type),
      payload: JSON.stringify(event),
      prompt_epoch: Math.floor((from + i) / 10) + 1,
      node_seq: from + i + 1
    }))
    yield* sql`INSERT INTO session_events ${sql.insert(rows)}`
  }
  const epochs = Math.ceil(EVENTS / 10)
  yield* sql`UPDATE sessions SET last_seq = ${EVENTS}, prompt_epoch = ${epochs} WHERE id = ${sessionId}`.pipe(
    Effect.catchAll(() => sql`UPDATE sessions SET last_seq = ${EVENTS} WHERE id = ${sessionId}`)
  )
  const auth = yield* Effect.provide(Auth, Auth.Default)
  const { sessionToken: token } = yield* auth.createSession(userId)
  const { url } = yield* Gateway.start({ host: "127.0.0.1", port: 0 })

  const browser = yield* Effect.promise(() =>
    chromium.launch({
      executablePath: process.env.SAM_CHROMIUM ?? "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox", "--disable-background-networking"]
    })
  )
  yield* Effect.addFinalizer(() => Effect.promise(() => browser.close()))
  const context = yield* Effect.promise(() => browser.newContext({ viewport: { width: 1280, height: 800 } }))
  yield* Effect.promise(() =>
    context.addCookies([{ name: "sam_session", value: token, url, httpOnly: true, sameSite: "Lax" }])
  )

  // The feed's messages as the page gets them: how many, and the time from the first to `caught-up`.
  yield* Effect.promise(() =>
    context.addInitScript(`(() => {
      const Native = window.WebSocket
      const seen = (window.__feedMessages = { count: 0, first: 0, caughtUp: 0 })
      window.WebSocket = class extends Native {
        constructor(...args) {
          super(...args)
          this.addEventListener("message", (event) => {
            if (seen.count++ === 0) seen.first = performance.now()
            if (!seen.caughtUp && String(event.data).startsWith('{"type":"caught-up"')) seen.caughtUp = performance.now()
          })
        }
      }
    })()`)
  )
  /** Loads a page and reports the JS it loaded and ran until `ready` holds. */
  const visit = (path: string, ready: string) =>
    Effect.promise(async () => {
      const page = await context.newPage()
      const cdp = await context.newCDPSession(page)
      await cdp.send("Performance.enable")
      const started = now()
      await page.goto(`${url}${path}`, { waitUntil: "commit" })
      await page.waitForFunction(ready, undefined, { timeout: 120_000, polling: 16 })
      const usableMs = now() - started
      const metrics = (await cdp.send("Performance.getMetrics")).metrics
      const script = metrics.find((m) => m.name === "ScriptDuration")?.value ?? 0
      const js = (await page.evaluate(`performance.getEntriesByType("resource")
        .filter((e) => e.name.endsWith(".js"))
        .reduce((a, e) => ({ n: a.n + 1, bytes: a.bytes + (e.decodedBodySize || 0) }), { n: 0, bytes: 0 })`)) as {
        n: number
        bytes: number
      }
      const rendered = (await page.evaluate(
        `document.querySelectorAll("[data-testid=timeline] [data-kind]").length`
      )) as number
      const feed = (await page.evaluate("window.__feedMessages")) as { count: number; first: number; caughtUp: number }
      return { page, usableMs, scriptMs: script * 1000, js, rendered, feed }
    })

  // (1) a new chat: nothing to load but the page
  const empty = yield* visit(
    `/projects/${projectId}/chat`,
    `document.querySelector("#composer-text") !== null && document.querySelector("[data-testid=sidebar]") !== null`
  )
  yield* Effect.promise(() => empty.page.close())
  // (2) the long session: usable when its last turn's text is on the page and the composer takes input
  const long = yield* visit(
    `/projects/${projectId}/chat/${sessionId}`,
    `(() => { const t = document.querySelector("[data-testid=timeline]"); const last = t && t.querySelector("[data-kind=text]:last-of-type, [data-kind]:last-child");
      return !!t && t.textContent.includes("Turn ${epochs} done.") && document.querySelector("#composer-text") !== null })()`
  )

  // (3) latency: the page vs a FeedClient in Node, both following the session from its end
  const feedSeen = new Map<number, number>()
  const feed = new FeedClient({
    baseUrl: url,
    token,
    sessions: [{ sessionId, afterSeq: EVENTS }],
    onFrame: (frame) => {
      if (frame.type === "session.event") feedSeen.set(frame.seq, now())
    }
  })
  yield* Effect.promise(
    () =>
      new Promise<void>((resolve) => {
        const check = () => (feed.stats.connections > 0 ? setTimeout(resolve, 300) : setTimeout(check, 20))
        check()
      })
  )
  yield* Effect.promise(() =>
    long.page.evaluate(`(() => {
      window.__seen = {}
      const t = document.querySelector("[data-testid=timeline]")
      new MutationObserver(() => {
        const text = (t.lastElementChild && t.lastElementChild.textContent) || ""
        for (const m of text.matchAll(/lat-(\\d+)\\b/g)) if (!window.__seen[m[1]]) window.__seen[m[1]] = performance.timeOrigin + performance.now()
      }).observe(t, { childList: true, subtree: true, characterData: true })
    })()`)
  )
  const subject = `sam.evt.${projectId}.session.${sessionId}.session.event`
  const sent = new Map<number, number>()
  for (let i = 1; i <= LATENCY_EVENTS; i++) {
    const seq = EVENTS + i
    sent.set(seq, now())
    nats.nc.publish(
      subject,
      encode(
        Domain.SessionEvents.SessionEventAppended.make({
          sessionId: sessionId as never,
          seq,
          promptEpoch: epochs,
          nodeSeq: seq,
          event: { type: "text", text: ` lat-${seq}` }
        })
      )
    )
    yield* Effect.sleep(30)
  }
  yield* Effect.promise(() =>
    long.page.waitForFunction(`Object.keys(window.__seen).length >= ${LATENCY_EVENTS}`, undefined, { timeout: 30_000 })
  )
  const pageSeen = (yield* Effect.promise(() => long.page.evaluate("window.__seen"))) as Record<string, number>
  feed.close()
  const pageLat: Array<number> = []
  const feedLat: Array<number> = []
  for (const [seq, at] of sent) {
    const p = pageSeen[String(seq)]
    const f = feedSeen.get(seq)
    if (p !== undefined) pageLat.push(p - at)
    if (f !== undefined) feedLat.push(f - at)
  }
  const kb = (bytes: number) => (bytes / 1024).toFixed(0)
  const ms = (value: number) => value.toFixed(1)
  const section = [
    "## Web app",
    "",
    `Measured ${new Date().toISOString().slice(0, 16)} UTC by \`node --import tsx test/bench/web-chat.ts ${EVENTS}\``,
    `on this machine (${cpus().length} cores, shared with other work; figures vary run to run): the built app`,
    "(`web/dist`, production build) served by one gateway, Debian's Chromium headless at 1280×800, nothing cached.",
    `The long session has ${EVENTS} transcript entries (${epochs} turns of a prompt, thought, plan, tool call,`,
    "four text chunks and the turn's end), inserted as the session actor would have; the page renders the",
    "last 150 timeline items of them. Script time is Chromium's `ScriptDuration` until the page was usable.",
    "The session page follows the transcript over the feed from seq 0: the feed's catch-up of every entry (in",
    "`session.events` runs, ADR 0042) and folding them into items; the page renders a window, never all of them.",
    "",
    "| page | usable after ms | JS files | JS KiB (decoded) | script ms | items rendered |",
    "|---|---:|---:|---:|---:|---:|",
    `| new chat (no session) | ${empty.usableMs.toFixed(0)} | ${empty.js.n} | ${kb(empty.js.bytes)} | ${ms(empty.scriptMs)} | ${empty.rendered} |`,
    `| session with ${EVENTS} events | ${long.usableMs.toFixed(0)} | ${long.js.n} | ${kb(long.js.bytes)} | ${ms(long.scriptMs)} | ${long.rendered} |`,
    "",
    `The long session's catch-up as the page got it: ${long.feed.count} feed messages until it was usable, ${(
      long.feed.caughtUp - long.feed.first
    ).toFixed(0)} ms from the first to \`caught-up\`.`,
    "",
    `Latency from publishing a session event on the bus to its text on the page, ${LATENCY_EVENTS} events 30 ms`,
    "apart, against a `FeedClient` in Node following the same session in the same run:",
    "",
    "| path | p50 ms | p99 ms |",
    "|---|---:|---:|",
    `| bus → FeedClient (Node) | ${ms(percentile(feedLat, 50))} | ${ms(percentile(feedLat, 99))} |`,
    `| bus → text on the page (Chromium) | ${ms(percentile(pageLat, 50))} | ${ms(percentile(pageLat, 99))} |`,
    `| added by the browser and the page | ${ms(percentile(pageLat, 50) - percentile(feedLat, 50))} | ${ms(percentile(pageLat, 99) - percentile(feedLat, 99))} |`,
    ""
  ].join("\n")
  yield* writeSection("Web app", section)
})

const build = await ensureBuilt()
process.stdout.write(`web app ${build.built ? `built in ${build.ms} ms` : "up to date"}\n`)
await runOnStack(() => Effect.scoped(main))
process.exit(0)
