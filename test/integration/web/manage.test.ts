import { SqlClient } from "@effect/sql"
import { makeId } from "@sam/bus"
import { BootTokens } from "@sam/gateway"
import { Effect, Redacted } from "effect"
import type { BrowserContext, Locator, Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeRepo } from "../../src/Repo.js"
import { apiGet, newContext, repoDir, shot, signIn, startWebStack, type WebStack } from "./WebKit.js"

/**
 * The screens around the chat as a person uses them, in Debian's Chromium against a real stack: the failure
 * card's Retry, a project's tasks (filter, a task's steps and history, cancel and retry), nodes and workspaces
 * (health, capacity, a node's workspaces, a workspace's boot log, stop and delete after a confirmation), the
 * project's members and the bell's count from the API (99+).
 */
let stack: WebStack
let context: BrowserContext
let page: Page
let projectUrl = ""

const poll = <T>(fn: () => T | Promise<T>, options: { readonly timeout?: number; readonly interval?: number } = {}) =>
  expect.poll(fn, { timeout: 10_000, ...options })

const composerText = () => page.locator("#composer-text")

/** Type into the composer and send with Ctrl+Enter, in task mode. */
const sendTask = async (text: string) => {
  await page.selectOption("#composer-mode", "task")
  await composerText().fill(text)
  await composerText().press("Control+Enter")
}

/** Reload until the page shows what is awaited: server-rendered pages change on a reload, as for a person. */
const reloadUntil = <T>(read: () => Promise<T>, options: { readonly timeout?: number } = {}) =>
  expect.poll(
    async () => {
      await page.reload()
      return read()
    },
    { timeout: 30_000, interval: 500, ...options }
  )

const sql = <A>(f: (sql: SqlClient.SqlClient) => Effect.Effect<A, unknown>) =>
  stack.runtime.runPromise(Effect.flatMap(SqlClient.SqlClient, f) as Effect.Effect<A, unknown, never>)

const projectIdOf = () => /\/projects\/([^/]+)/.exec(projectUrl)?.[1] ?? ""

const taskTitle = () => page.locator("h1").first()

/**
 * Click a link until the page is at `url`. In one clean run (two test files at a time) a filter's click on
 * the tasks page, made while the page was still finishing the navigation that brought it there, never
 * reached its URL: the page went to the tasks page again instead.
 */
const follow = async (link: Locator, url: string) => {
  for (let attempt = 1; ; attempt++) {
    const arrived = page.waitForURL(url, { timeout: 10_000 }).then(
      () => true,
      () => false
    )
    await link.click()
    if (await arrived) return
    if (attempt === 3) throw new Error(`three clicks did not reach ${url}; the page is at ${page.url()}`)
  }
}

/** The statuses a task's history went to, oldest first, as its page shows them. */
const historyTo = () => page.getByTestId("status-history").locator("tbody tr td:nth-child(2) strong").allTextContents()

let failedTaskId = ""
let longTaskId = ""

beforeAll(async () => {
  stack = await startWebStack()
  context = await newContext(stack)
  page = await context.newPage()
  await signIn(page, stack)
  await page.fill("#p-name", "manage demo")
  await page.fill("#p-repo", makeRepo(await repoDir()))
  await Promise.all([page.waitForURL("**/projects/*/chat"), page.click("text=Create project")])
  projectUrl = new URL(page.url()).pathname
}, 240_000)

afterAll(async () => {
  await stack?.close()
}, 180_000)

describe("web app: tasks, nodes and workspaces, members, the bell", () => {
  it("retries a failed task from the failure card: it runs again, and its history shows both runs", async () => {
    await page.goto(projectUrl)
    // The agent crashes after 2 s: a retry on the warm node fails again within a second otherwise, too soon
    // to see the card go (CI missed it).
    await sendTask("say about to crash\nsleep 2000\ncrash")
    await poll(() => page.getByTestId("failure-card").isVisible(), { timeout: 90_000 }).toBe(true)
    const tasks = await apiGet(stack, context, `/projects/${projectIdOf()}/tasks?status=failed`)
    failedTaskId = tasks.tasks[0].id
    await page.getByTestId("failure-card").getByRole("button", { name: "Retry" }).click()
    // The card goes while the task runs again, and comes back when the agent crashes once more.
    await poll(() => page.getByTestId("failure-card").count(), { timeout: 20_000, interval: 200 }).toBe(0)
    await poll(() => page.getByTestId("failure-card").isVisible(), { timeout: 90_000 }).toBe(true)
    expect(await page.getByTestId("failure-reason").textContent()).toMatch(/crash|exit/i)
    const task = await apiGet(stack, context, `/tasks/${failedTaskId}`)
    expect(task.status).toBe("failed")
    expect(task.statusEvents.filter((e: { to: string }) => e.to === "failed").length).toBe(2)
    expect(task.statusEvents.some((e: { from: string | null; to: string }) => e.from === "failed")).toBe(true)
  })

  it("filters the project's tasks by status; a task shows its steps and history, and is cancelled and retried", async () => {
    await page.goto(projectUrl)
    await sendTask("say long task started\nsleep 300000")
    await page.waitForURL(/\/chat\/sess_/, { timeout: 90_000 })
    await poll(() => page.getByTestId("working-bar").isVisible(), { timeout: 60_000 }).toBe(true)

    await Promise.all([page.waitForURL("**/tasks"), page.getByRole("link", { name: "Tasks", exact: true }).click()])
    await poll(() => page.getByTestId("tasks").locator("li").count()).toBe(2)
    await follow(page.getByRole("link", { name: "in progress", exact: true }), "**/tasks?status=in_progress")
    await poll(() => page.getByTestId("tasks").locator("li").count()).toBe(1)
    expect(await page.getByTestId("tasks").textContent()).toContain("long task started")
    await follow(page.getByRole("link", { name: "failed", exact: true }), "**/tasks?status=failed")
    await poll(() => page.getByTestId("tasks").textContent()).toContain("crash")
    expect(await page.getByTestId("tasks").locator("li").count()).toBe(1)
    await follow(page.getByRole("link", { name: "completed", exact: true }), "**/tasks?status=completed")
    await poll(() => page.locator("main").textContent()).toContain("No tasks completed")

    // The failed one: its steps show where it failed, its history both runs.
    await page.getByRole("link", { name: "failed", exact: true }).click()
    await Promise.all([page.waitForURL(`**/tasks/${failedTaskId}`), page.getByTestId("tasks").locator("a").click()])
    await poll(() => page.getByTestId("task-steps").locator("[data-state=failed]").count()).toBe(1)
    expect((await historyTo()).filter((to) => to === "failed").length).toBe(2)

    // The running one: its current step is "Running"; cancel it, then retry it.
    await page.goBack()
    await page.getByRole("link", { name: "in progress", exact: true }).click()
    await page.waitForURL("**/tasks?status=in_progress")
    await page.getByTestId("tasks").locator("a").click()
    await page.waitForURL(/\/tasks\/task_/)
    longTaskId = /\/tasks\/(task_[^/?#]+)/.exec(page.url())?.[1] ?? ""
    await poll(() => taskTitle().textContent()).toContain("long task started")
    // (handed to its workspace, "delegated", until the agent runs; the page is as of its loading)
    await reloadUntil(async () => (await historyTo()).at(-1)).toBe("in_progress")
    const current = page.getByTestId("task-steps").locator("[data-state=current]")
    await poll(() => current.getAttribute("data-step")).toBe("running")
    expect(await page.getByTestId("task-steps").locator("[data-state=todo]").count()).toBe(0)
    const before = await historyTo()
    expect(before[0]).toBe("queued")
    expect(before[before.length - 1]).toBe("in_progress")
    await shot(page, "task-running")
    await page.getByRole("button", { name: "Cancel task" }).click()
    await poll(() => page.locator(".badge").first().textContent(), { timeout: 20_000 }).toBe("cancelled")
    expect((await historyTo()).at(-1)).toBe("cancelled")
    expect(await page.getByTestId("task-steps").locator("[data-state=current]").count()).toBe(0)
    expect((await apiGet(stack, context, `/tasks/${longTaskId}`)).status).toBe("cancelled")

    await page.getByRole("button", { name: "Retry" }).click()
    await poll(() => page.locator(".badge").first().textContent(), { timeout: 20_000 }).not.toBe("cancelled")
    await reloadUntil(() => page.locator(".badge").first().textContent(), { timeout: 90_000 }).toBe("in progress")
    const after = await historyTo()
    expect(after.slice(0, before.length + 1)).toEqual([...before, "cancelled"])
    expect(after.slice(before.length + 1)).toContain("queued")
    await shot(page, "task-retried")
  })

  it("lists nodes with status, health and capacity; a node's workspaces; a workspace's boot log; stop and delete after a confirmation", async () => {
    await Promise.all([page.waitForURL("**/nodes"), page.getByRole("link", { name: "Nodes", exact: true }).click()])
    const nodes = page.getByTestId("nodes")
    await poll(() => nodes.textContent()).toContain("healthy")
    const listed = (await apiGet(stack, context, "/nodes")).nodes
    expect(await nodes.locator("li").count()).toBe(listed.length)
    const node = listed[0]
    const row = nodes.locator("li", { hasText: node.id })
    expect(await row.textContent()).toContain(node.status)
    expect(await row.textContent()).toContain(`${node.activeWorkspaces}/${node.maxWorkspaces}`)
    await shot(page, "nodes-capacity")

    const task = await apiGet(stack, context, `/tasks/${longTaskId}`)
    const workspaceId: string = task.workspaceId
    expect(workspaceId).toBeTruthy()
    await Promise.all([
      page.waitForURL(`**/nodes/${task.nodeId}`),
      nodes.locator("a", { hasText: task.nodeId }).click()
    ])
    await poll(() => page.locator("main").textContent()).toMatch(/capacity \d+\/\d+/)
    // The long task's and the failed one's (at least).
    await poll(() => page.locator("main li").count()).toBeGreaterThanOrEqual(2)
    await Promise.all([
      page.waitForURL(`**/workspaces/${workspaceId}`),
      page.locator("main a", { hasText: workspaceId }).click()
    ])
    await poll(() => page.getByTestId("bootlog").textContent()).toMatch(/\S/)
    const lines = (await apiGet(stack, context, `/workspaces/${workspaceId}/bootlog?limit=1000`)).lines
    expect(lines.length).toBeGreaterThan(0)
    expect(await page.getByTestId("bootlog").textContent()).toContain(lines[lines.length - 1].message)
    const status = () => page.locator("main .badge").first().textContent()
    await poll(status).toBe("running")
    await shot(page, "workspace")

    // Asked first; "Keep it" changes nothing.
    await page.getByRole("button", { name: "Stop…" }).click()
    await poll(() => page.locator("main").textContent()).toContain("Stop this workspace?")
    await page.getByRole("button", { name: "Keep it" }).click()
    await poll(() => page.getByRole("button", { name: "Yes, stop" }).count()).toBe(0)
    expect((await apiGet(stack, context, `/workspaces/${workspaceId}`)).status).toBe("running")

    await page.getByRole("button", { name: "Stop…" }).click()
    await page.getByRole("button", { name: "Yes, stop" }).click()
    await poll(() => page.locator("main").textContent()).toContain("Stopping.")
    await reloadUntil(status, { timeout: 60_000 }).toBe("stopped")
    expect((await apiGet(stack, context, `/workspaces/${workspaceId}`)).status).toBe("stopped")

    await page.getByRole("button", { name: "Delete…" }).click()
    await poll(() => page.locator("main").textContent()).toContain("Delete this workspace and its files?")
    await page.getByRole("button", { name: "Yes, delete" }).click()
    await poll(() => page.locator("main").textContent()).toContain("Deleting.")
    await reloadUntil(status, { timeout: 60_000 }).toBe("deleted")
    expect((await apiGet(stack, context, `/workspaces/${workspaceId}`)).status).toBe("deleted")
  })

  it("adds and removes a project member, with an inline error for an unknown login", async () => {
    const bob = makeId("user")
    await sql((q) => q`INSERT INTO users (id, display_name, login) VALUES (${bob}, ${"Bob Web"}, ${"bob-web"})`)
    await page.goto(projectUrl)
    await Promise.all([page.waitForURL("**/settings"), page.getByRole("link", { name: "Project settings" }).click()])
    const members = page.getByTestId("members")
    await poll(() => members.locator("li").count()).toBe(1)
    await page.fill("#m-login", "nobody-here")
    await page.getByRole("button", { name: "Add member" }).click()
    await poll(() => page.getByRole("alert").textContent()).toMatch(/nobody-here|no user|not found/i)
    expect(await members.locator("li").count()).toBe(1)

    await page.fill("#m-login", "bob-web")
    await page.getByRole("button", { name: "Add member" }).click()
    await poll(() => members.locator("li").count()).toBe(2)
    expect(await members.locator("li", { hasText: "Bob Web" }).textContent()).toContain("member")
    const listed = (await apiGet(stack, context, `/projects/${projectIdOf()}/members`)).members
    expect(listed.map((m: { userId: string }) => m.userId)).toContain(bob)
    await shot(page, "members")

    await page.getByRole("button", { name: "Remove Bob Web" }).click()
    await poll(() => members.locator("li").count()).toBe(1)
    const after = (await apiGet(stack, context, `/projects/${projectIdOf()}/members`)).members
    expect(after.map((m: { userId: string }) => m.userId)).not.toContain(bob)
  })

  it("follows new output only while the reader is at the bottom of the conversation", async () => {
    const timeline = page.getByTestId("timeline")
    const lastText = () => timeline.locator("[data-kind=text]").last().textContent()
    const position = () =>
      page.evaluate(`(() => {
        const el = document.querySelector("[data-testid=timeline]")
        return { top: el.scrollTop, fromBottom: el.scrollHeight - el.scrollTop - el.clientHeight }
      })()`) as Promise<{ top: number; fromBottom: number }>
    await page.goto(projectUrl)
    await composerText().fill(`${Array.from({ length: 60 }, (_, i) => `tool card-${i + 1}`).join("\n")}\nsay filled`)
    await composerText().press("Control+Enter")
    await poll(lastText, { timeout: 90_000 }).toContain("filled")
    await poll(async () => (await position()).fromBottom).toBeLessThan(60)

    await composerText().fill("say turn begins\nsleep 2500\nsay while you read\nsleep 5000\nsay back at the bottom")
    await composerText().press("Control+Enter")
    await poll(lastText, { timeout: 20_000 }).toContain("turn begins")
    // The reader scrolls up into the middle: new output must not pull the view down.
    await page.evaluate(`(() => {
      const el = document.querySelector("[data-testid=timeline]")
      el.scrollTop = Math.floor((el.scrollHeight - el.clientHeight) / 2)
    })()`)
    const reading = await position()
    expect(reading.fromBottom).toBeGreaterThan(200)
    await poll(lastText, { timeout: 20_000 }).toContain("while you read")
    expect(Math.abs((await position()).top - reading.top)).toBeLessThan(5)
    // Back at the bottom, it follows again.
    await page.evaluate(`(() => {
      const el = document.querySelector("[data-testid=timeline]")
      el.scrollTop = el.scrollHeight
    })()`)
    await poll(lastText, { timeout: 20_000 }).toContain("back at the bottom")
    await poll(async () => (await position()).fromBottom).toBeLessThan(60)
  })

  it("counts unread Priority notifications on the bell from the API, as 99+ above 99", async () => {
    const me = await apiGet(stack, context, "/me")
    await sql(
      (q) => q`
        INSERT INTO notifications (id, user_id, project_id, type, priority, title, source_event_id)
        SELECT id, ${me.userId}, ${projectIdOf()}, 'task_complete', true, 'Task completed', id
        FROM (SELECT 'ntf_' || md5(random()::text || i) AS id FROM generate_series(1, 240) AS i) AS many`
    )
    const counts = await apiGet(stack, context, "/notifications/unread-count")
    expect(counts.priority).toBeGreaterThanOrEqual(240)
    await page.goto(projectUrl)
    await poll(() => page.getByTestId("bell-count").textContent()).toBe("99+")
    await page.getByTestId("bell").click()
    await poll(() => page.getByTestId("tab-priority").locator(".badge").textContent()).toBe("99+")
    await page.getByRole("button", { name: "Mark all read" }).click()
    await poll(() => page.getByTestId("bell-count").count()).toBe(0)
    expect((await apiGet(stack, context, "/notifications/unread-count")).priority).toBe(0)
  })

  it("shows a booting cloud node's boot log live: a line the node sends after the page loaded appears without a reload", async () => {
    const me = await apiGet(stack, context, "/me")
    const nodeId = makeId("node")
    await sql(
      (q) =>
        q`INSERT INTO nodes (id, provider, status, owner_id) VALUES (${nodeId}, 'hetzner', 'provisioning', ${me.userId})`
    )
    const issued = await stack.runtime.runPromise(
      BootTokens.issue({ nodeId, ownerId: me.userId, purpose: "cloud", provider: "hetzner" })
    )
    // What the node's boot script sends as it goes (POST /node-boot/log with its bootstrap token).
    const send = async (seq: number, message: string) => {
      const r = await fetch(`${stack.url}/api/v1/node-boot/log`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          token: Redacted.value(issued.token),
          nodeId,
          entries: [{ seq, at: new Date().toISOString(), step: "artifact", status: "info", message }]
        })
      })
      expect(r.status).toBe(200)
    }
    await send(1, "downloading the vm-agent")
    await page.goto(`${stack.url}/nodes/${nodeId}`)
    const log = page.getByTestId("node-bootlog")
    await poll(() => log.textContent()).toContain("downloading the vm-agent")
    // No reload from here on: a mark on the page's window survives only if the page stays.
    await page.evaluate("window.__stayed = true")
    await poll(() => page.evaluate("window.__samFeed?.stats.connections ?? 0")).toBeGreaterThan(0)
    await send(2, "vm-agent installed")
    await poll(() => log.textContent()).toContain("vm-agent installed")
    expect(await page.evaluate("window.__stayed")).toBe(true)
    const text = (await log.textContent()) ?? ""
    expect(text.indexOf("downloading the vm-agent")).toBeLessThan(text.indexOf("vm-agent installed"))
    await shot(page, "node-bootlog-live")
    await sql((q) => q`UPDATE nodes SET status = 'deleted' WHERE id = ${nodeId}`)
  })
})
