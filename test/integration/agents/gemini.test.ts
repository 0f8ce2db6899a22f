import { layer } from "@effect/vitest"
import { AgentInstall } from "@sam/infra"
import { Effect } from "effect"
import { expect } from "vitest"
import { startFakeGemini } from "../../src/FakeGemini.js"
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

const KEY = "AIzaFAKEGEMINIKEY-c2FtLWdlbWluaS1lMmU"
const BAD_KEY = "AIzaREVOKEDGEMINI-bm90LXJlYWw"

const setup = (url: string, key: string, taskMode = "task") =>
  Effect.gen(function* () {
    const alice = yield* makeUser("Alice")
    const projectId = yield* createProject(alice, "gemini")
    const saved = yield* api(alice, "PUT", "/agent-credentials/gemini", { body: { kind: "api-key", value: key } })
    expect(saved.status).toBe(200)
    const env = yield* api(alice, "PUT", `/projects/${projectId}/runtime/env`, {
      body: { key: "GOOGLE_GEMINI_BASE_URL", value: url }
    })
    expect(env.status).toBe(200)
    const profile = yield* api(alice, "POST", `/projects/${projectId}/agent-profiles`, {
      body: { name: "gemini", agent: "gemini", permissionMode: "allow-all", taskMode }
    })
    expect(profile.status).toBe(201)
    return { alice, projectId, profileId: profile.body.id as string }
  })

// a real agent answers a cancel within the node's default grace, which a loaded machine may need
const AgentEnv = makeGatewayEnv({}, { cancelGraceMs: 5_000 })

layer(AgentEnv, { excludeTestServices: true, timeout: 240_000 })("Gemini CLI end to end (fake Gemini API)", (it) => {
  it.scoped(
    "a task with the Gemini profile streams a thought, text and tool calls, edits a file; it is committed",
    () =>
      Effect.gen(function* () {
        yield* AgentInstall.installAgent("gemini")
        const fake = yield* startFakeGemini
        const { alice, projectId, profileId } = yield* setup(fake.url, KEY)
        const feed = yield* follow(alice, projectId)
        fake.script(
          {
            parts: [
              { thought: "The user wants hello.txt written." },
              { text: "Writing hello.txt." },
              { functionCall: { name: "write_file", args: { file_path: "hello.txt", content: "hello from gemini\n" } } }
            ]
          },
          { parts: [{ functionCall: { name: "run_shell_command", args: { command: "echo ran > ran.txt" } } }] },
          { parts: [{ text: "All done: hello.txt is written." }] }
        )
        const created = yield* api(alice, "POST", `/projects/${projectId}/tasks`, {
          body: { prompt: "write hello.txt", profileId }
        })
        expect(created.status).toBe(201)
        const taskId = created.body.id as string
        const { done, events } = yield* runTask(feed, taskId)
        expect(done.errorReason).toBeNull()
        expect(done).toMatchObject({ status: "completed", branch: `sam/${taskId}` })
        expect(fake.requests.filter((r) => r.main).length).toBeGreaterThanOrEqual(3)
        expect(fake.requests.every((r) => r.apiKey === KEY)).toBe(true)

        const text = JSON.stringify(events)
        expect(events.some((e) => e.type === "thought")).toBe(true)
        expect(text).toContain("The user wants hello.txt written.")
        expect(text).toContain("Writing hello.txt.")
        expect(text).toContain("All done")
        expect(events.filter((e) => e.type === "tool-call").length).toBeGreaterThanOrEqual(2)
        const show = yield* branchFile(taskId)
        expect(show("hello.txt")).toBe("hello from gemini\n")
        expect(show("ran.txt")).toBe("ran\n")
        yield* expectSecretKept(KEY)
      }),
    // it installs the agent's pinned release first (hundreds of MB from the registry on a fresh machine)
    240_000
  )

  it.scoped("an invalid key ends the task with the API's reason, which holds no secret", () =>
    Effect.gen(function* () {
      const fake = yield* startFakeGemini
      const { alice, projectId, profileId } = yield* setup(fake.url, BAD_KEY)
      fake.script({ status: 400 }, { status: 400 }, { status: 400 })
      const created = yield* api(alice, "POST", `/projects/${projectId}/tasks`, {
        body: { prompt: "write hello.txt", profileId }
      })
      const failed = yield* untilTask(
        created.body.id,
        "ends",
        (r) => ["completed", "failed"].includes(r.status),
        "90 seconds"
      )
      expect(failed.status).toBe("failed")
      expect(failed.errorReason).toMatch(/API key not valid|API_KEY_INVALID|400/i)
      expect(failed.errorReason).not.toContain(BAD_KEY)
      yield* expectSecretKept(BAD_KEY)
    })
  )

  it.scoped(
    "cancel during a long command stops its processes; the follow-up goes on the same conversation",
    () =>
      Effect.gen(function* () {
        const fake = yield* startFakeGemini
        const { alice, projectId, profileId } = yield* setup(fake.url, KEY, "conversation")
        fake.script({ parts: [{ functionCall: { name: "run_shell_command", args: { command: LONG } } }] })
        const created = yield* api(alice, "POST", `/projects/${projectId}/tasks`, {
          body: { prompt: "remember the word PELICAN, then wait", profileId }
        })
        const sessionId = yield* cancelDuringCommand(alice, created.body.id as string, LONG)
        // Gemini CLI answers session/cancel in time, so the vm-agent keeps it (killing only the command) rather
        // than starting it again: Gemini CLI 0.61 could not load this conversation, whose only turn was cancelled
        // before it saved it ("No previous sessions found for this project").
        fake.script({ parts: [{ text: "The word was PELICAN." }] })
        const before = fake.requests.length
        yield* followUp(alice, sessionId, "which word?", "The word was PELICAN.")
        const after = fake.requests.slice(before).filter((r) => r.main)
        expect(after.length).toBeGreaterThan(0)
        const contents = JSON.stringify(after.at(-1)!.body.contents)
        expect(contents).toContain("which word?")
        expect(contents).toContain("remember the word PELICAN")
        expect(yield* agentRestarts(sessionId)).toBe(0)
      }),
    180_000
  )
})
