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

const KEY = "oc-FAKEOPENCODEKEY-c2FtLW9wZW5jb2RlLWUyZQ"
const BAD_KEY = "oc-REVOKEDOPENCODE-bm90LXJlYWw"

/** OpenCode on an OpenAI-compatible provider: its whole config as a project runtime variable, the key by reference. */
const config = (url: string) =>
  JSON.stringify({
    $schema: "https://opencode.ai/config.json",
    provider: {
      fake: {
        npm: "@ai-sdk/openai-compatible",
        name: "Fake OpenAI-compatible",
        options: { baseURL: `${url}/v1`, apiKey: "{env:OPENCODE_API_KEY}" },
        models: { "fake-model": { name: "Fake model" } }
      }
    },
    model: "fake/fake-model"
  })

const setup = (url: string, key: string, taskMode = "task") =>
  Effect.gen(function* () {
    const alice = yield* makeUser("Alice")
    const projectId = yield* createProject(alice, "opencode")
    const saved = yield* api(alice, "PUT", "/agent-credentials/opencode", { body: { kind: "api-key", value: key } })
    expect(saved.status).toBe(200)
    const env = yield* api(alice, "PUT", `/projects/${projectId}/runtime/env`, {
      body: { key: "OPENCODE_CONFIG_CONTENT", value: config(url) }
    })
    expect(env.status).toBe(200)
    const profile = yield* api(alice, "POST", `/projects/${projectId}/agent-profiles`, {
      body: { name: "opencode", agent: "opencode", taskMode }
    })
    expect(profile.status).toBe(201)
    return { alice, projectId, profileId: profile.body.id as string }
  })

// a real agent answers a cancel within the node's default grace, which a loaded machine may need
const AgentEnv = makeGatewayEnv({}, { cancelGraceMs: 5_000 })

layer(AgentEnv, { excludeTestServices: true, timeout: 240_000 })(
  "OpenCode end to end (fake OpenAI-compatible API)",
  (it) => {
    it.scoped(
      "a task with the OpenCode profile streams reasoning, text and tool calls, edits a file; it is committed",
      () =>
        Effect.gen(function* () {
          yield* AgentInstall.installAgent("opencode")
          const fake = yield* startFakeOpenAI
          const { alice, projectId, profileId } = yield* setup(fake.url, KEY)
          const feed = yield* follow(alice, projectId)
          fake.script(
            {
              items: [
                { type: "reasoning", text: "The user wants hello.txt; a command will write it." },
                { type: "message", text: "Writing hello.txt." },
                {
                  type: "function_call",
                  name: "bash",
                  arguments: { command: "printf 'hello from opencode\\n' > hello.txt", description: "write hello.txt" }
                }
              ]
            },
            { items: [{ type: "message", text: "All done: hello.txt is written." }] }
          )
          const created = yield* api(alice, "POST", `/projects/${projectId}/tasks`, {
            body: { prompt: "write hello.txt", profileId }
          })
          expect(created.status).toBe(201)
          const taskId = created.body.id as string
          const { done, events } = yield* runTask(feed, taskId)
          expect(done.errorReason).toBeNull()
          expect(done).toMatchObject({ status: "completed", branch: `sam/${taskId}` })
          const main = fake.requests.filter((r) => r.main)
          expect(main.length).toBeGreaterThanOrEqual(2)
          expect(fake.requests.every((r) => r.authorization === `Bearer ${KEY}`)).toBe(true)

          const text = JSON.stringify(events)
          expect(events.some((e) => e.type === "thought")).toBe(true)
          expect(text).toContain("a command will write it")
          expect(text).toContain("Writing hello.txt.")
          expect(text).toContain("All done")
          expect(events.some((e) => e.type === "tool-call")).toBe(true)
          expect((yield* branchFile(taskId))("hello.txt")).toBe("hello from opencode\n")
          // OpenCode reports the turn's tokens in its prompt answer: kept with the turn's end, summed on the session
          const ended = events.find((e) => e.type === "turn-ended" && "usage" in e) as {
            usage?: { totalTokens?: number }
          }
          expect(ended.usage?.totalTokens).toBeGreaterThan(0)
          const session = yield* api(alice, "GET", `/sessions/${done.sessionId}`)
          expect(session.body.usage).toMatchObject({ turns: 1, totalTokens: ended.usage?.totalTokens })
          yield* expectSecretKept(KEY)
        }),
      // it installs the agent's pinned release first (hundreds of MB from the registry on a fresh machine)
      240_000
    )

    it.scoped("a bad key ends the turn with the provider's error, which holds no secret", () =>
      Effect.gen(function* () {
        const fake = yield* startFakeOpenAI
        const { alice, projectId, profileId } = yield* setup(fake.url, BAD_KEY)
        fake.script({ status: 401 }, { status: 401 }, { status: 401 })
        const created = yield* api(alice, "POST", `/projects/${projectId}/tasks`, {
          body: { prompt: "write hello.txt", profileId }
        })
        const ended = yield* untilTask(
          created.body.id,
          "ends",
          (r) => ["completed", "failed"].includes(r.status),
          "90 seconds"
        )
        expect(JSON.stringify(ended)).not.toContain(BAD_KEY)
        yield* expectSecretKept(BAD_KEY)
        expect(ended.status).toBe("failed")
        expect(ended.errorReason).toMatch(/401|Incorrect API key|Unauthorized/i)
      })
    )

    it.scoped(
      "cancel during a long command stops its processes; a follow-up keeps the conversation",
      () =>
        Effect.gen(function* () {
          const fake = yield* startFakeOpenAI
          const { alice, projectId, profileId } = yield* setup(fake.url, KEY, "conversation")
          fake.script({
            items: [
              { type: "function_call", name: "bash", arguments: { command: LONG, description: "wait a long time" } }
            ]
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
          expect(JSON.stringify(after.at(-1)!.body.messages)).toContain("PELICAN")
          expect(JSON.stringify(after.at(-1)!.body.messages)).toContain("which word?")
          // the agent answered the cancel in time: it was kept, not started again
          expect(yield* agentRestarts(sessionId)).toBe(0)
        }),
      180_000
    )
  }
)
