import { AgentInstall } from "@sam/infra"
import { Effect, Exit, Scope } from "effect"
import type { BrowserContext, Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startFakeAnthropic } from "../../src/FakeAnthropic.js"
import { makeUser } from "../../src/index.js"
import { makeRepo } from "../../src/Repo.js"
import { masterKeyForTests } from "../agents/AgentKit.js"
import { apiGet, newContext, repoDir, sessionToken, shot, signIn, startWebStack, type WebStack } from "./WebKit.js"

/**
 * The agent settings pages in Debian's Chromium against a real stack: a credential is added and never shown back,
 * a profile with a runtime variable is made, the composer picks it, and the task (the demo agent) runs with it.
 * Then a real agent (Claude Code, against a local fake of the Anthropic API) reports its usage, which the chat
 * header shows.
 */
masterKeyForTests()

const KEY = "sk-ant-api03-WEBSETTINGS-bmV2ZXItc2hvd24tYmFjaw"
const SECRET = "s3cret-WEB-runtime-value"

let stack: WebStack
let context: BrowserContext
let page: Page
/** the project and the chat the profile test made: the member's test looks at them */
let profileProject = ""
let profileChat = ""

const poll = <T>(fn: () => T | Promise<T>, options: { readonly timeout?: number } = {}) =>
  expect.poll(fn, { timeout: 10_000, ...options })

beforeAll(async () => {
  stack = await startWebStack()
  context = await newContext(stack)
  page = await context.newPage()
  await signIn(page, stack)
}, 240_000)

const fakes = Effect.runSync(Scope.make())

afterAll(async () => {
  await stack?.close()
  await Effect.runPromise(Scope.close(fakes, Exit.void))
}, 180_000)

/** A JSON request to the API as the signed-in browser's user. */
const apiSend = async (method: string, path: string, body: unknown) => {
  const response = await fetch(`${stack.url}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${await sessionToken(context)}`, "content-type": "application/json" },
    body: JSON.stringify(body)
  })
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`)
  // biome-ignore lint/suspicious/noExplicitAny: a response body, checked field by field
  return (await response.json()) as any
}

describe("web app: agent credentials and profiles", () => {
  it("adds a credential whose value is never rendered back, rotates it and removes it", async () => {
    await page.goto("/settings")
    await Promise.all([page.waitForURL("**/settings/agents"), page.click("text=Agent credentials")])
    const card = page.getByTestId("credential-claude-code")
    expect(await page.getByTestId("credential-status-claude-code").textContent()).toBe("No credential set")
    await card.locator("input[name=value]").fill(KEY)
    await card.getByRole("button", { name: "Save" }).click()
    await poll(() => page.getByTestId("credential-status-claude-code").textContent()).toContain("Anthropic API key set")
    expect(await card.locator("input[name=value]").inputValue()).toBe("")
    expect(await page.content()).not.toContain(KEY)
    await page.reload()
    expect(await page.content()).not.toContain(KEY)
    const listed = await apiGet(stack, context, "/agent-credentials")
    expect(listed.credentials).toEqual([expect.objectContaining({ agent: "claude-code", hasValue: true })])
    expect(JSON.stringify(listed)).not.toContain(KEY)
    await shot(page, "agent-credentials")
    // a new value of the other kind rotates it
    await card.locator("select[name=kind]").selectOption("oauth-token")
    await card.locator("input[name=value]").fill(`${KEY}-ROTATED`)
    await card.getByRole("button", { name: "Rotate" }).click()
    await poll(() => page.getByTestId("credential-status-claude-code").textContent()).toContain("subscription token")
    expect(await page.content()).not.toContain(KEY)
    expect((await apiGet(stack, context, "/agent-credentials")).credentials).toEqual([
      expect.objectContaining({ agent: "claude-code", kind: "oauth-token", hasValue: true })
    ])
    // removing it revokes it
    await card.getByRole("button", { name: "Remove the Claude Code credential" }).click()
    await poll(() => page.getByTestId("credential-status-claude-code").textContent()).toBe("No credential set")
    expect((await apiGet(stack, context, "/agent-credentials")).credentials).toEqual([])
  })

  it("creates a profile with runtime variables (a secret one masked); the composer picks it and the task gets them", async () => {
    await page.goto("/projects")
    await page.fill("#p-name", "agents web")
    await page.fill("#p-repo", makeRepo(await repoDir()))
    await Promise.all([page.waitForURL("**/projects/*/chat"), page.click("text=Create project")])
    const projectId = /\/projects\/([^/]+)\/chat/.exec(page.url())![1]!
    profileProject = projectId
    await page.goto(`/projects/${projectId}/settings`)
    await Promise.all([page.waitForURL("**/agents"), page.click("text=Agent profiles")])

    const form = page.getByTestId("new-profile")
    await form.locator("input[name=name]").fill("web demo")
    await form.locator("select[name=agent]").selectOption("demo")
    await form.locator("select[name=taskMode]").selectOption("conversation")
    await form.getByRole("button", { name: "Create profile" }).click()
    const profile = page.getByTestId("profile-web demo")
    await poll(() => profile.count()).toBe(1)
    /** the profile's details stay open across an action's reload, or are opened again */
    const open = async () => {
      if ((await profile.locator("details").getAttribute("open")) === null) await profile.locator("summary").click()
    }
    await open()
    const runtime = profile.locator("[data-testid^=runtime-]")
    await runtime.locator("input[name=key]:not([type=hidden])").fill("WEB_FOO")
    await runtime.locator("input[name=value]").fill("from-profile")
    await runtime.getByRole("button", { name: "Set a variable of profile web demo" }).click()
    await poll(() => profile.getByTestId("env-WEB_FOO").textContent()).toContain("from-profile")
    await open()
    await runtime.locator("input[name=key]:not([type=hidden])").fill("WEB_SECRET")
    await runtime.locator("input[name=value]").fill(SECRET)
    await runtime.locator("input[id^=env-secret-]").check()
    await runtime.getByRole("button", { name: "Set a variable of profile web demo" }).click()
    await poll(() => profile.getByTestId("env-WEB_SECRET").count()).toBe(1)
    expect(await profile.getByTestId("env-WEB_SECRET").textContent()).toContain("secret")
    expect(await page.content()).not.toContain(SECRET)
    await shot(page, "agent-profiles")

    await page.goto(`/projects/${projectId}/chat`)
    const option = page.locator("#composer-agent option", { hasText: "web demo (Demo agent)" })
    await page.selectOption("#composer-agent", (await option.getAttribute("value"))!)
    expect(await page.locator("#composer-mode").inputValue()).toBe("conversation")
    // a shell's ${#VAR}: the secret's length, not the secret
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the command's own shell expands it
    await page.locator("#composer-text").fill('run echo "FOO=$WEB_FOO SECRET_LENGTH=${#WEB_SECRET}"')
    await page.locator("#composer-text").press("Control+Enter")
    await page.waitForURL(/\/chat\/sess_/, { timeout: 90_000 })
    profileChat = new URL(page.url()).pathname
    const tool = page.getByTestId("timeline").locator("[data-kind=tool]").last()
    await poll(() => tool.getAttribute("data-status"), { timeout: 60_000 }).toBe("completed")
    await tool.locator("summary").click()
    await poll(() => tool.locator(".tool-output").textContent()).toContain(
      `FOO=from-profile SECRET_LENGTH=${SECRET.length}`
    )
    // the task was the profile's
    const tasks = await apiGet(stack, context, `/projects/${projectId}/tasks`)
    expect(tasks.tasks[0]).toMatchObject({ agent: "demo", mode: "conversation" })
    expect(await page.content()).not.toContain(SECRET)
  })

  it("a member sees the owner's profiles and chat, secrets masked, and is offered no way to change or drive them", async () => {
    expect(profileChat).toMatch(/\/chat\/sess_/)
    const bob = await stack.runtime.runPromise(makeUser("Bob Member"))
    await apiSend("POST", `/projects/${profileProject}/members`, { userId: bob.userId, role: "member" })
    const bobs = await newContext(stack)
    await bobs.addCookies([{ name: "sam_session", value: bob.token, url: stack.url }])
    const member = await bobs.newPage()
    try {
      await member.goto(`/projects/${profileProject}/agents`)
      await poll(() => member.getByTestId("owners-only").textContent()).toContain("Only the project's owners")
      const profile = member.getByTestId("profile-web demo")
      await profile.locator("summary").click()
      await poll(() => profile.getByTestId("env-WEB_FOO").textContent()).toContain("from-profile")
      expect(await profile.getByTestId("env-WEB_SECRET").textContent()).toContain("secret")
      // nothing to submit: no profile form, no variable or file form, no remove button
      expect(await member.getByTestId("new-profile").count()).toBe(0)
      expect(await member.locator("main form").count()).toBe(0)
      expect(await member.content()).not.toContain(SECRET)
      await shot(member, "member-agents")

      await member.goto(profileChat)
      const tool = member.getByTestId("timeline").locator("[data-kind=tool]").last()
      await poll(() => tool.getAttribute("data-status")).toBe("completed")
      await poll(() => member.getByTestId("not-yours").textContent()).toContain("only they can write to it")
      expect(await member.locator("#composer-text").count()).toBe(0)
      await shot(member, "member-chat")
      // and the API refuses what the page does not offer
      const refused = await fetch(`${stack.url}/api/v1/sessions/${profileChat.split("/").pop()}/prompt`, {
        method: "POST",
        headers: { authorization: `Bearer ${bob.token}`, "content-type": "application/json" },
        body: JSON.stringify({ prompt: "run env" })
      })
      expect(refused.status).toBe(403)

      // nor Cancel on the task's page, nor Stop and Delete on its workspace's, which the owner is offered
      const session = await apiGet(stack, context, `/sessions/${profileChat.split("/").pop()}`)
      const taskPage = `/projects/${profileProject}/tasks/${session.taskId}`
      const workspacePage = `/workspaces/${session.workspaceId}`
      await page.goto(taskPage)
      await poll(() => page.getByRole("button", { name: "Cancel task" }).count()).toBe(1)
      await member.goto(taskPage)
      await poll(() => member.getByTestId("task-steps").count()).toBe(1)
      expect(await member.getByRole("button", { name: "Cancel task" }).count()).toBe(0)
      await page.goto(workspacePage)
      await poll(() => page.getByRole("button", { name: "Stop…", exact: true }).count()).toBe(1)
      await member.goto(workspacePage)
      await poll(() => member.locator("h1").first().textContent()).toBe(session.workspaceId)
      expect(await member.getByRole("button", { name: "Stop…", exact: true }).count()).toBe(0)
      expect(await member.getByRole("button", { name: "Delete…", exact: true }).count()).toBe(0)
    } finally {
      await bobs.close()
    }
  })

  it("the chat header shows the tokens and the cost Claude Code reported for the turn", async () => {
    await Effect.runPromise(AgentInstall.installAgent("claude-code"))
    const fake = await Effect.runPromise(startFakeAnthropic.pipe(Scope.extend(fakes)))
    // the turn's one model request reports 400k input and 100k output tokens
    fake.script({
      blocks: [{ type: "text", text: "Noted, at some expense." }],
      usage: { input_tokens: 400_000, output_tokens: 100_000 }
    })
    await page.goto("/projects")
    await page.fill("#p-name", "usage web")
    await page.fill("#p-repo", makeRepo(await repoDir()))
    await Promise.all([page.waitForURL("**/projects/*/chat"), page.click("text=Create project")])
    const projectId = /\/projects\/([^/]+)\/chat/.exec(page.url())![1]!
    await apiSend("PUT", "/agent-credentials/claude-code", { kind: "api-key", value: KEY })
    for (const [key, value] of [
      ["ANTHROPIC_BASE_URL", fake.url],
      ["CLAUDE_CODE_MAX_RETRIES", "0"]
    ])
      await apiSend("PUT", `/projects/${projectId}/runtime/env`, { key, value })
    await apiSend("POST", `/projects/${projectId}/agent-profiles`, {
      name: "claude usage",
      agent: "claude-code",
      model: "claude-sonnet-4-5",
      permissionMode: "allow-all",
      taskMode: "conversation"
    })

    await page.goto(`/projects/${projectId}/chat`)
    const option = page.locator("#composer-agent option", { hasText: "claude usage (Claude Code)" })
    await page.selectOption("#composer-agent", (await option.getAttribute("value"))!)
    await page.locator("#composer-text").fill("note this, whatever it costs")
    await page.locator("#composer-text").press("Control+Enter")
    await page.waitForURL(/\/chat\/sess_/, { timeout: 90_000 })
    const sessionId = /\/chat\/(sess_[^/?]+)/.exec(page.url())![1]!
    await poll(() => page.getByTestId("timeline").locator("[data-kind=text]").last().textContent(), {
      timeout: 90_000
    }).toContain("Noted, at some expense.")

    // what the agent reported: the turn's tokens on its end, the context and the cost in its last usage_update
    // (the text shows as the agent writes it; the turn's end follows it into the transcript)
    const transcriptEnded = async () => {
      const read = await apiGet(stack, context, `/sessions/${sessionId}/events`)
      return (read.events as Array<{ event: { type: string } }>).some((e) => e.event.type === "turn-ended")
        ? read
        : undefined
    }
    await poll(transcriptEnded, { timeout: 30_000 }).toBeDefined()
    const transcript = (await transcriptEnded())!
    interface Reported {
      readonly used: number
      readonly size: number
      readonly cost: { readonly amount: number; readonly currency: string }
    }
    interface Entry {
      readonly event: {
        readonly type: string
        readonly usage?: { inputTokens: number; outputTokens: number; totalTokens: number }
        readonly update?: { readonly sessionUpdate?: string } & Partial<Reported>
      }
    }
    const events = transcript.events as Array<Entry>
    const ended = events.find((e) => e.event.type === "turn-ended")!.event.usage!
    const reported = events
      .filter((e) => e.event.type === "update" && e.event.update?.sessionUpdate === "usage_update")
      .at(-1)!.event.update as Reported
    // the fake's 400k + 100k tokens are the turn's, and the cost is theirs at Claude Code's price for the model
    // ($3 per million input tokens, $15 per million output: 1.20 + 1.50; the session title's few tokens round away)
    expect(ended.inputTokens).toBeGreaterThanOrEqual(400_000)
    expect(ended.outputTokens).toBeGreaterThanOrEqual(100_000)
    expect(reported.cost.currency).toBe("USD")
    expect(reported.cost.amount).toBeCloseTo(2.7, 2)

    // the header says so, as the session's usage from the agent's reports
    const badge = page.getByTestId("session-usage")
    const label = `${Math.round(ended.totalTokens / 1000)}k tokens · ${reported.cost.amount.toFixed(2)} USD`
    expect(label).toBe("500k tokens · 2.70 USD")
    await poll(() => badge.textContent(), { timeout: 30_000 }).toBe(label)
    expect(await badge.getAttribute("title")).toBe(
      `1 turn(s) reported: ${ended.inputTokens} in, ${ended.outputTokens} out, ${ended.totalTokens} total; ` +
        `context ${reported.used} of ${reported.size} tokens; cost so far ${reported.cost.amount} USD`
    )
    // it is what the session says, after a reload too
    const session = await apiGet(stack, context, `/sessions/${sessionId}`)
    expect(session.usage).toMatchObject({
      turns: 1,
      totalTokens: ended.totalTokens,
      cost: reported.cost,
      context: { usedTokens: reported.used, sizeTokens: reported.size }
    })
    await page.reload()
    expect(await page.getByTestId("session-usage").textContent()).toBe(label)
    await poll(() => page.getByTestId("timeline").locator("[data-kind=text]").last().textContent()).toContain(
      "Noted, at some expense."
    )
    await shot(page, "chat-usage")
    expect(await page.content()).not.toContain(KEY)
  }, 240_000)
})
