import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { AgentInstall } from "@sam/infra"
import { Effect } from "effect"
import { expect } from "vitest"
import { startFakeOpenAI } from "../../src/FakeOpenAI.js"
import { makeGatewayEnv, makeUser } from "../../src/index.js"
import { api, createProject, untilTask } from "../gateway/RestKit.js"
import {
  agentRestarts,
  branchFile,
  cancelDuringCommand,
  expectSecretKept,
  follow,
  followUp,
  masterKeyForTests,
  runTask
} from "./AgentKit.js"

masterKeyForTests()

/** A command that runs until stopped, unique to this file so its processes are told apart. */
const LONG = `sleep ${3000 + Math.floor(Math.random() * 900)}`

const KEY = "sk-proj-FAKECODEXKEY-c2FtLWNvZGV4LWUyZQ"
const AUTH_FILE_KEY = "sk-proj-FROMAUTHJSON-YXV0aC1maWxl"
const BAD_KEY = "sk-proj-REVOKEDCODEX-bm90LXJlYWw"

/** Codex reaches a provider through its config.toml: a project runtime file in the workspace user's home. */
const codexConfig = (url: string) => `model = "gpt-5-codex"
model_provider = "fake"

[model_providers.fake]
name = "fake OpenAI"
base_url = "${url}/v1"
env_key = "OPENAI_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
`

const setup = (url: string, key: string, taskMode = "task") =>
  Effect.gen(function* () {
    const alice = yield* makeUser("Alice")
    const projectId = yield* createProject(alice, "codex")
    const saved = yield* api(alice, "PUT", "/agent-credentials/codex", { body: { kind: "api-key", value: key } })
    expect(saved.status).toBe(200)
    const file = yield* api(alice, "PUT", `/projects/${projectId}/runtime/files`, {
      body: { path: "~/.codex/config.toml", content: codexConfig(url) }
    })
    expect(file.status).toBe(200)
    const profile = yield* api(alice, "POST", `/projects/${projectId}/agent-profiles`, {
      body: { name: "codex", agent: "codex", permissionMode: "allow-all", taskMode }
    })
    expect(profile.status).toBe(201)
    return { alice, projectId, profileId: profile.body.id as string }
  })

// a real agent answers a cancel within the node's default grace, which a loaded machine may need
const AgentEnv = makeGatewayEnv({}, { cancelGraceMs: 5_000 })

layer(AgentEnv, { excludeTestServices: true, timeout: 240_000 })(
  "Codex end to end (fake OpenAI Responses API)",
  (it) => {
    it.scoped(
      "a task with the Codex profile streams reasoning, text and a command that edits a file; it is committed",
      () =>
        Effect.gen(function* () {
          yield* AgentInstall.installAgent("codex")
          const fake = yield* startFakeOpenAI
          const { alice, projectId, profileId } = yield* setup(fake.url, KEY)
          const feed = yield* follow(alice, projectId)
          fake.script(
            {
              items: [
                { type: "reasoning", text: "The user wants hello.txt; a shell command will do." },
                { type: "message", text: "Creating hello.txt." },
                {
                  type: "function_call",
                  name: "exec_command",
                  arguments: { cmd: "printf 'hello from codex\\n' > hello.txt" }
                }
              ]
            },
            { items: [{ type: "message", text: "All done: hello.txt exists." }] }
          )
          const created = yield* api(alice, "POST", `/projects/${projectId}/tasks`, {
            body: { prompt: "create hello.txt", profileId }
          })
          expect(created.status).toBe(201)
          expect(created.body).toMatchObject({ agent: "codex", mode: "task" })
          const taskId = created.body.id as string
          const { done, events } = yield* runTask(feed, taskId)
          expect(done.errorReason).toBeNull()
          expect(done).toMatchObject({ status: "completed", branch: `sam/${taskId}` })
          expect(fake.requests.length).toBeGreaterThanOrEqual(2)
          expect(fake.requests.every((r) => r.authorization === `Bearer ${KEY}`)).toBe(true)

          const text = JSON.stringify(events)
          expect(events.some((e) => e.type === "thought")).toBe(true)
          expect(text).toContain("a shell command will do")
          expect(text).toContain("Creating hello.txt.")
          expect(text).toContain("All done")
          expect(events.some((e) => e.type === "tool-call")).toBe(true)
          expect((yield* branchFile(taskId))("hello.txt")).toBe("hello from codex\n")
          // Codex reports its context window's use (ACP usage_update): shown with the session
          const session = yield* api(alice, "GET", `/sessions/${done.sessionId}`)
          expect(session.body.usage).toMatchObject({ turns: 0, cost: null })
          expect(session.body.usage.context.usedTokens).toBeGreaterThan(0)
          expect(session.body.usage.context.sizeTokens).toBeGreaterThan(session.body.usage.context.usedTokens)
          yield* expectSecretKept(KEY)
        }),
      // it installs the agent's pinned release first (hundreds of MB from the registry on a fresh machine)
      240_000
    )

    it.scoped("a bad key ends the task with the provider's error, which holds no secret", () =>
      Effect.gen(function* () {
        const fake = yield* startFakeOpenAI
        const { alice, projectId, profileId } = yield* setup(fake.url, BAD_KEY)
        fake.script({ status: 401 }, { status: 401 }, { status: 401 })
        const created = yield* api(alice, "POST", `/projects/${projectId}/tasks`, {
          body: { prompt: "create hello.txt", profileId }
        })
        const failed = yield* untilTask(
          created.body.id,
          "ends",
          (r) => ["completed", "failed"].includes(r.status),
          "90 seconds"
        )
        expect(failed.status).toBe("failed")
        expect(failed.errorReason).toMatch(/401|Unauthorized|API key/i)
        expect(failed.errorReason).not.toContain(BAD_KEY)
        yield* expectSecretKept(BAD_KEY)
      })
    )

    it.scoped(
      "with an auth.json credential the file is written 0600 in the workspace home and Codex signs in with it",
      () =>
        Effect.gen(function* () {
          const fake = yield* startFakeOpenAI
          const alice = yield* makeUser("Alice")
          const projectId = yield* createProject(alice, "codex-auth")
          const saved = yield* api(alice, "PUT", "/agent-credentials/codex", {
            body: { kind: "auth-file", value: JSON.stringify({ OPENAI_API_KEY: AUTH_FILE_KEY }) }
          })
          expect(saved.body).toMatchObject({ kind: "auth-file", hasValue: true })
          // the provider takes OpenAI's sign-in (auth.json) instead of a variable
          const config = codexConfig(fake.url).replace('env_key = "OPENAI_API_KEY"', "requires_openai_auth = true")
          yield* api(alice, "PUT", `/projects/${projectId}/runtime/files`, {
            body: { path: "~/.codex/config.toml", content: config }
          })
          const profile = yield* api(alice, "POST", `/projects/${projectId}/agent-profiles`, {
            body: { name: "codex", agent: "codex", permissionMode: "allow-all", taskMode: "conversation" }
          })
          fake.script({
            items: [
              { type: "function_call", name: "exec_command", arguments: { cmd: "stat -c %a ~/.codex/auth.json" } }
            ]
          })
          const created = yield* api(alice, "POST", `/projects/${projectId}/tasks`, {
            body: { prompt: "show the auth file's mode", profileId: profile.body.id }
          })
          const row = yield* untilTask(
            created.body.id,
            "awaits a follow-up",
            (r) => r.executionStep === "awaiting_followup"
          )
          expect(fake.requests.length).toBeGreaterThan(0)
          expect(fake.requests.every((r) => r.authorization === `Bearer ${AUTH_FILE_KEY}`)).toBe(true)
          const sql = yield* SqlClient.SqlClient
          const events = yield* sql<{ payload: unknown }>`
        SELECT payload FROM session_events WHERE session_id = ${row.sessionId} ORDER BY seq`
          // the command's output: the file is the workspace user's alone
          const updates = events.filter((e) => (e.payload as { type: string }).type === "tool-call-update")
          expect(JSON.stringify(updates)).toMatch(/\b600\b/)
          yield* expectSecretKept(AUTH_FILE_KEY)
        })
    )

    it.scoped(
      "cancel during a long command stops its processes; a follow-up keeps the conversation",
      () =>
        Effect.gen(function* () {
          const fake = yield* startFakeOpenAI
          const { alice, projectId, profileId } = yield* setup(fake.url, KEY, "conversation")
          fake.script({
            items: [{ type: "function_call", name: "exec_command", arguments: { cmd: LONG, yield_time_ms: 120000 } }]
          })
          const created = yield* api(alice, "POST", `/projects/${projectId}/tasks`, {
            body: { prompt: "remember the word PELICAN, then wait", profileId }
          })
          const sessionId = yield* cancelDuringCommand(alice, created.body.id as string, LONG)
          fake.script({ items: [{ type: "message", text: "You asked me to remember a word." }] })
          const before = fake.requests.length
          yield* followUp(alice, sessionId, "which word?", "You asked me to remember a word.")
          // the agent sent the first prompt along with the follow-up: the conversation survived the cancel
          const after = fake.requests.slice(before).filter((r) => r.main)
          expect(after.length).toBeGreaterThan(0)
          expect(JSON.stringify(after.at(-1)!.body.input)).toContain("PELICAN")
          expect(JSON.stringify(after.at(-1)!.body.input)).toContain("which word?")
          // the agent answered the cancel in time: it was kept, not started again
          expect(yield* agentRestarts(sessionId)).toBe(0)
        }),
      180_000
    )
  }
)
