import { execFileSync } from "node:child_process"
import { readdir, readFile } from "node:fs/promises"
import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import type { Api } from "@sam/bus"
import { FeedClient } from "@sam/gateway/client"
import { AgentInstall } from "@sam/infra"
import { Effect } from "effect"
import { expect } from "vitest"
import { LocalNodes } from "../../src/ControlPlaneHarness.js"
import { waitUntil } from "../../src/Env.js"
import { type FakeAnthropic, startFakeAnthropic, workingDirectory } from "../../src/FakeAnthropic.js"
import { GatewayEnv, GatewayUrl, makeUser, type TestUser } from "../../src/index.js"
import { api, createProject, recorded, untilTask } from "../gateway/RestKit.js"

// The control plane and the gateway of this process open secrets with this key (`sam up` generates one).
process.env.SAM_MASTER_KEY ??= Buffer.alloc(32, 7).toString("base64")

const KEY = "sk-ant-api03-FAKEKEY-c2FtLWNsYXVkZS1lMmUtdGVzdA"
const BAD_KEY = "sk-ant-api03-REVOKED-bm90LWEtcmVhbC1rZXk"

/** Everything the ledger holds, as text: every row of every table. */
const ledgerText = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const tables = yield* sql<{ name: string }>`
    SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`
  const parts: Array<string> = []
  for (const { name } of tables) {
    const rows = yield* sql<{ text: string | null }>`SELECT string_agg(t::text, ' ') AS text FROM ${sql(name)} t`
    parts.push(rows[0]?.text ?? "")
  }
  return parts.join("\n")
})

/** Every vm-agent log, and every workspace's env file (what its shells and terminals start with). */
const nodeFiles = Effect.gen(function* () {
  const { dir } = yield* LocalNodes
  return yield* Effect.promise(async () => {
    const out: Array<{ path: string; text: string }> = []
    const walk = async (path: string, depth: number): Promise<void> => {
      for (const entry of await readdir(path, { withFileTypes: true }).catch(() => [])) {
        const full = join(path, entry.name)
        if (entry.isDirectory() && depth < 6 && entry.name !== "checkout" && entry.name !== "home")
          await walk(full, depth + 1)
        else if (
          entry.isFile() &&
          (entry.name === "vm-agent.log" || entry.name === "env" || entry.name.endsWith(".json"))
        )
          out.push({ path: full, text: await readFile(full, "utf8").catch(() => "") })
      }
    }
    await walk(dir, 0)
    return out
  })
})

/** A feed client following the project; the frames it received so far. */
const follow = (user: TestUser, projectId: string) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const baseUrl = yield* GatewayUrl
      const frames: Array<Api.ServerFrame> = []
      const client = new FeedClient({
        baseUrl,
        token: user.token,
        projects: [projectId],
        onFrame: (f) => frames.push(f)
      })
      return { client, frames }
    }),
    ({ client }) => Effect.sync(() => client.close())
  )

const setup = (fake: FakeAnthropic, key: string) =>
  Effect.gen(function* () {
    const alice = yield* makeUser("Alice")
    const projectId = yield* createProject(alice, "claude")
    const saved = yield* api(alice, "PUT", "/agent-credentials/claude-code", { body: { kind: "api-key", value: key } })
    expect(saved.status).toBe(200)
    expect(saved.body).toMatchObject({ agent: "claude-code", kind: "api-key", hasValue: true })
    // The provider's address and a short retry budget are the project's runtime variables.
    for (const [k, value] of [
      ["ANTHROPIC_BASE_URL", fake.url],
      ["CLAUDE_CODE_MAX_RETRIES", "0"]
    ] as const) {
      const set = yield* api(alice, "PUT", `/projects/${projectId}/runtime/env`, { body: { key: k, value } })
      expect(set.status).toBe(200)
    }
    const profile = yield* api(alice, "POST", `/projects/${projectId}/agent-profiles`, {
      body: { name: "claude", agent: "claude-code", permissionMode: "allow-all", taskMode: "task" }
    })
    expect(profile.status).toBe(201)
    return { alice, projectId, profileId: profile.body.id as string }
  })

layer(GatewayEnv, { excludeTestServices: true, timeout: 240_000 })(
  "Claude Code end to end (fake Anthropic API)",
  (it) => {
    it.scoped(
      "a task with the Claude Code profile streams thought, text and tool calls, edits a file, commits it; the key stays secret",
      () =>
        Effect.gen(function* () {
          yield* AgentInstall.installAgent("claude-code")
          const fake = yield* startFakeAnthropic
          const { alice, projectId, profileId } = yield* setup(fake, KEY)
          const feed = yield* follow(alice, projectId)
          fake.script(
            (request) => ({
              blocks: [
                { type: "thinking", thinking: "The user wants hello.txt; I will write it." },
                { type: "text", text: "Writing hello.txt now." },
                {
                  type: "tool_use",
                  name: "Write",
                  input: { file_path: `${workingDirectory(request)}/hello.txt`, content: "hello from claude\n" }
                }
              ]
            }),
            {
              blocks: [
                { type: "tool_use", name: "Bash", input: { command: "echo ran > ran.txt", description: "note" } }
              ]
            },
            { blocks: [{ type: "text", text: "All done: hello.txt is written." }] }
          )
          const created = yield* api(alice, "POST", `/projects/${projectId}/tasks`, {
            body: { prompt: "write hello.txt", profileId }
          })
          expect(created.status).toBe(201)
          expect(created.body).toMatchObject({ agent: "claude-code", mode: "task" })
          const taskId = created.body.id as string
          // Follow the session as soon as it exists: its events stream live (after a catch-up of what came before).
          const opened = yield* untilTask(taskId, "has a session", (r) => r.sessionId !== null, "120 seconds")
          const sql = yield* SqlClient.SqlClient
          yield* waitUntil(
            "the session is open",
            sql`SELECT 1 FROM sessions WHERE id = ${opened.sessionId}`.pipe(Effect.map((rows) => rows[0]))
          )
          feed.client.subscribe({ sessions: [{ sessionId: opened.sessionId!, afterSeq: 0 }] })
          const done = yield* untilTask(
            taskId,
            "ends",
            (r) => ["completed", "failed"].includes(r.status),
            "150 seconds"
          )
          expect(done.errorReason).toBeNull()
          expect(done).toMatchObject({ status: "completed", branch: `sam/${taskId}` })

          // The adapter really called the provider, with the key, as the profile's agent.
          const main = fake.requests.filter((r) => r.main)
          expect(main.length).toBeGreaterThanOrEqual(3)
          expect(main.every((r) => r.apiKey === KEY)).toBe(true)

          // The feed client saw the thought, the text and the tool calls.
          const sessionId = done.sessionId!
          const events = yield* waitUntil(
            "the feed shows the turn",
            Effect.sync(() => {
              const seen = feed.frames.flatMap((f) =>
                f.type === "session.event" && f.sessionId === sessionId ? [f.event as { type: string }] : []
              )
              return seen.some((e) => e.type === "turn-ended") ? seen : undefined
            }),
            { timeout: "20 seconds" }
          )
          const text = JSON.stringify(events)
          expect(events.some((e) => e.type === "thought")).toBe(true)
          expect(text).toContain("I will write it")
          expect(text).toContain("Writing hello.txt now.")
          expect(text).toContain("All done")
          expect(events.filter((e) => e.type === "tool-call").length).toBeGreaterThanOrEqual(2)
          expect(text).toMatch(/"status":"completed"/)

          // The task branch has the agent's edit and what its command wrote.
          const ws = yield* sql<{ id: string }>`SELECT workspace_id AS id FROM tasks WHERE id = ${taskId}`
          const { dir } = yield* LocalNodes
          const checkout = execFileSync("find", [dir, "-type", "d", "-path", `*${ws[0]!.id}*`, "-name", ".git"], {
            encoding: "utf8"
          })
            .trim()
            .split("\n")[0]!
            .replace(/\/\.git$/, "")
          const show = (path: string) =>
            execFileSync("git", ["-c", `safe.directory=${checkout}`, "-C", checkout, "show", `sam/${taskId}:${path}`], {
              encoding: "utf8"
            })
          expect(show("hello.txt")).toBe("hello from claude\n")
          expect(show("ran.txt")).toBe("ran\n")

          // The key is nowhere but in the agent's process: not in the ledger, the logs, the env files, the API.
          const ledger = yield* ledgerText
          expect(ledger.includes(KEY)).toBe(false)
          expect(ledger).toContain("claude-code")
          for (const file of yield* nodeFiles) expect(file.text.includes(KEY), file.path).toBe(false)
          const listed = yield* api(alice, "GET", "/agent-credentials")
          expect(listed.body.credentials).toEqual([expect.objectContaining({ agent: "claude-code", hasValue: true })])
          for (const response of recorded) expect(response.text.includes(KEY), response.path).toBe(false)
        })
    )

    it.scoped("a bad key ends the turn and the task with a clear error that holds no secret", () =>
      Effect.gen(function* () {
        const fake = yield* startFakeAnthropic
        const { alice, projectId, profileId } = yield* setup(fake, BAD_KEY)
        fake.script({ status: 401 })
        const created = yield* api(alice, "POST", `/projects/${projectId}/tasks`, {
          body: { prompt: "write hello.txt", profileId }
        })
        const taskId = created.body.id as string
        const failed = yield* untilTask(taskId, "ends", (r) => ["completed", "failed"].includes(r.status), "90 seconds")
        expect(failed.status).toBe("failed")
        expect(failed.errorReason).toMatch(/auth|api key/i)
        expect(failed.errorReason).not.toContain(BAD_KEY)
        expect(fake.requests.some((r) => r.apiKey === BAD_KEY)).toBe(true)
        const sql = yield* SqlClient.SqlClient
        const events = yield* sql<{ payload: unknown }>`
        SELECT payload FROM session_events WHERE session_id = ${failed.sessionId} ORDER BY seq`
        expect(JSON.stringify(events)).toMatch(/Invalid API key/i)
        expect((yield* ledgerText).includes(BAD_KEY)).toBe(false)
      })
    )

    it.scoped("without a credential the task fails at once, saying which one to add", () =>
      Effect.gen(function* () {
        const fake = yield* startFakeAnthropic
        const { alice, projectId, profileId } = yield* setup(fake, KEY)
        const revoked = yield* api(alice, "DELETE", "/agent-credentials/claude-code")
        expect(revoked.status).toBe(200)
        const created = yield* api(alice, "POST", `/projects/${projectId}/tasks`, {
          body: { prompt: "write hello.txt", profileId }
        })
        const failed = yield* untilTask(created.body.id, "ends", (r) => ["completed", "failed"].includes(r.status))
        expect(failed.status).toBe("failed")
        expect(failed.errorReason).toMatch(/no Claude Code credential/)
        expect(fake.requests.length).toBe(0)
      })
    )
  }
)
