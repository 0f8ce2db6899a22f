import { execFileSync } from "node:child_process"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Actors, ControlPlane } from "@sam/actors"
import { Domain, makeId, ProjectId, TaskId, UserId } from "@sam/bus"
import { AgentInstall } from "@sam/infra"
import { Effect } from "effect"
import { expect } from "vitest"
import { waitUntil } from "../../src/Env.js"
import { type FakeAnthropic, startFakeAnthropic, workingDirectory } from "../../src/FakeAnthropic.js"
import { makeGatewayEnv, makeUser } from "../../src/index.js"
import { vmAgentPids } from "../../src/ProcessTree.js"
import { api, createProject, untilTask } from "../gateway/RestKit.js"
import {
  agentRestarts,
  branchFile,
  expectSecretKept,
  follow,
  ledgerText,
  masterKeyForTests,
  runTask
} from "./AgentKit.js"

// The control plane and the gateway of this process open secrets with this key (`sam up` generates one).
masterKeyForTests()

/** The vm-agent process of `nodeId`. */
const vmAgentPid = (nodeId: string) => Effect.sync(() => vmAgentPids(`SAM_NODE_ID=${nodeId}`)[0])

/** pgrep exits 1 when nothing matches */
const safe = (count: () => number) => {
  try {
    return count()
  } catch {
    return 0
  }
}

const KEY = "sk-ant-api03-FAKEKEY-c2FtLWNsYXVkZS1lMmUtdGVzdA"
const OAUTH_TOKEN = "sk-ant-oat01-FAKEOAUTH-c3Vic2NyaXB0aW9u"
const BAD_KEY = "sk-ant-api03-REVOKED-bm90LWEtcmVhbC1rZXk"

const setup = (
  fake: FakeAnthropic,
  key: string,
  options: { readonly permissionMode?: string; readonly taskMode?: string } = {}
) =>
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
      body: {
        name: "claude",
        agent: "claude-code",
        permissionMode: options.permissionMode ?? "allow-all",
        taskMode: options.taskMode ?? "task",
        model: "claude-fake-model"
      }
    })
    expect(profile.status).toBe(201)
    return { alice, projectId, profileId: profile.body.id as string }
  })

// a real agent answers a cancel within the node's default grace, which a loaded machine may need
const AgentEnv = makeGatewayEnv({}, { cancelGraceMs: 5_000 })

layer(AgentEnv, { excludeTestServices: true, timeout: 240_000 })(
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
          const { done, events } = yield* runTask(feed, taskId)
          expect(done.errorReason).toBeNull()
          expect(done).toMatchObject({ status: "completed", branch: `sam/${taskId}` })

          // The adapter really called the provider, with the key, as the profile's agent.
          const main = fake.requests.filter((r) => r.main)
          expect(main.length).toBeGreaterThanOrEqual(3)
          expect(main.every((r) => r.apiKey === KEY)).toBe(true)

          // The feed client saw the thought, the text and the tool calls.
          const text = JSON.stringify(events)
          expect(events.some((e) => e.type === "thought")).toBe(true)
          expect(text).toContain("I will write it")
          expect(text).toContain("Writing hello.txt now.")
          expect(text).toContain("All done")
          expect(events.filter((e) => e.type === "tool-call").length).toBeGreaterThanOrEqual(2)
          expect(text).toMatch(/"status":"completed"/)
          // the turn's token usage is kept with its end; the profile's model reached the provider
          const ended = events.find((e) => e.type === "turn-ended") as { usage?: { totalTokens?: number } }
          expect(ended.usage?.totalTokens).toBeGreaterThan(0)
          // … and summed with the session
          const session = yield* api(alice, "GET", `/sessions/${done.sessionId}`)
          expect(session.body.usage).toMatchObject({ turns: 1, totalTokens: ended.usage?.totalTokens })
          expect(main.every((r) => r.model === "claude-fake-model")).toBe(true)

          // The task branch has the agent's edit and what its command wrote.
          const show = yield* branchFile(taskId)
          expect(show("hello.txt")).toBe("hello from claude\n")
          expect(show("ran.txt")).toBe("ran\n")

          // The key is nowhere but in the agent's process: not in the ledger, the logs, the env files, the API.
          expect(yield* ledgerText).toContain("claude-code")
          const listed = yield* api(alice, "GET", "/agent-credentials")
          expect(listed.body.credentials).toEqual([expect.objectContaining({ agent: "claude-code", hasValue: true })])
          yield* expectSecretKept(KEY)
        }),
      // it installs the agent's pinned release first (hundreds of MB from the registry on a fresh machine)
      240_000
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
        // not in the ledger, the node's logs and env files, or any API response
        yield* expectSecretKept(BAD_KEY)
      })
    )

    it.scoped("rate limited (429) and overloaded (529) answers end the turn with the provider's reason", () =>
      Effect.gen(function* () {
        const fake = yield* startFakeAnthropic
        const { alice, projectId, profileId } = yield* setup(fake, KEY)
        for (const [status, reason] of [
          [429, /rate limit/i],
          [529, /overloaded/i]
        ] as const) {
          fake.script({ status })
          const created = yield* api(alice, "POST", `/projects/${projectId}/tasks`, {
            body: { prompt: `try once (${status})`, profileId }
          })
          const failed = yield* untilTask(created.body.id, "ends", (r) => ["completed", "failed"].includes(r.status))
          expect(failed.status).toBe("failed")
          const sql = yield* SqlClient.SqlClient
          const events = yield* sql<{ payload: unknown }>`
            SELECT payload FROM session_events WHERE session_id = ${failed.sessionId} ORDER BY seq`
          expect(`${failed.errorReason} ${JSON.stringify(events)}`).toMatch(reason)
        }
      })
    )

    it.scoped("a rotated credential of the other kind (a subscription OAuth token) is what the next session uses", () =>
      Effect.gen(function* () {
        const fake = yield* startFakeAnthropic
        const { alice, projectId, profileId } = yield* setup(fake, KEY, { taskMode: "conversation" })
        const rotated = yield* api(alice, "PUT", "/agent-credentials/claude-code", {
          body: { kind: "oauth-token", value: OAUTH_TOKEN }
        })
        expect(rotated.body).toMatchObject({ kind: "oauth-token", hasValue: true })
        fake.script({ blocks: [{ type: "text", text: "Signed in with a subscription." }] })
        const created = yield* api(alice, "POST", `/projects/${projectId}/tasks`, {
          body: { prompt: "hello", profileId }
        })
        yield* untilTask(created.body.id, "awaits a follow-up", (r) => r.executionStep === "awaiting_followup")
        const main = fake.requests.filter((r) => r.main)
        expect(main.length).toBeGreaterThan(0)
        expect(main.every((r) => r.authorization === `Bearer ${OAUTH_TOKEN}` && r.apiKey === undefined)).toBe(true)
        yield* expectSecretKept(OAUTH_TOKEN)
        yield* expectSecretKept(KEY)
      })
    )

    it.scoped(
      "without a credential the task is refused at its submit, saying which one to add; on a node it fails",
      () =>
        Effect.gen(function* () {
          const fake = yield* startFakeAnthropic
          const { alice, projectId, profileId } = yield* setup(fake, KEY)
          const revoked = yield* api(alice, "DELETE", "/agent-credentials/claude-code")
          expect(revoked.status).toBe(200)
          // refused before a node is found for it (it was made, and failed on the node it had started)
          const refused = yield* api(alice, "POST", `/projects/${projectId}/tasks`, {
            body: { prompt: "write hello.txt", profileId }
          })
          expect(refused.status).toBe(409)
          expect(refused.body).toMatchObject({ code: "invalid_state", details: { agent: "claude-code" } })
          expect(refused.body.message).toMatch(
            /no Claude Code credential of yours .*sam agents credential set claude-code/
          )
          const listed = yield* api(alice, "GET", `/projects/${projectId}/tasks`)
          expect(listed.body.tasks).toEqual([])
          // A task that reaches a node without one (its credential removed after the submit) fails there, saying so.
          const taskId = TaskId.parse(makeId("task"))
          yield* Actors.ask(
            ControlPlane.TaskRef,
            taskId,
            Domain.ControlProtocol.TaskSubmit.make({
              taskId,
              projectId: ProjectId.parse(projectId),
              userId: UserId.parse(alice.userId),
              prompt: "write hello.txt",
              agent: "claude-code",
              mode: "task"
            })
          )
          const failed = yield* untilTask(taskId, "ends", (r) => ["completed", "failed"].includes(r.status))
          expect(failed.status).toBe("failed")
          expect(failed.errorReason).toMatch(/no Claude Code credential/)
          // and its retry is refused as its submit would be
          const retried = yield* api(alice, "POST", `/tasks/${taskId}/retry`)
          expect(retried.status).toBe(409)
          expect(retried.body.message).toMatch(/no Claude Code credential of yours/)
          expect(fake.requests.length).toBe(0)
        })
    )

    it.scoped("in ask mode the edit waits for a person's answer, which lets it go ahead", () =>
      Effect.gen(function* () {
        const fake = yield* startFakeAnthropic
        const { alice, projectId, profileId } = yield* setup(fake, KEY, { permissionMode: "ask" })
        const feed = yield* follow(alice, projectId)
        fake.script(
          (request) => ({
            blocks: [
              {
                type: "tool_use",
                name: "Write",
                input: { file_path: `${workingDirectory(request)}/asked.txt`, content: "asked first\n" }
              }
            ]
          }),
          { blocks: [{ type: "text", text: "Written after your answer." }] }
        )
        const created = yield* api(alice, "POST", `/projects/${projectId}/tasks`, {
          body: { prompt: "write asked.txt", profileId }
        })
        const taskId = created.body.id as string
        const opened = yield* untilTask(taskId, "has a session", (r) => r.sessionId !== null, "120 seconds")
        const sessionId = opened.sessionId!
        const sql = yield* SqlClient.SqlClient
        const request = yield* waitUntil(
          "the agent asks before writing",
          sql<{ payload: { requestId: string; options: Array<{ optionId: string; kind: string }> } }>`
            SELECT payload FROM session_events WHERE session_id = ${sessionId} AND type = 'permission-requested'`.pipe(
            Effect.map((rows) => rows[0]?.payload)
          ),
          { timeout: "60 seconds" }
        )
        const allow = request.options.find((o) => o.kind === "allow_once") ?? request.options[0]!
        const answered = yield* api(alice, "POST", `/sessions/${sessionId}/permissions/${request.requestId}`, {
          body: { optionId: allow.optionId }
        })
        expect(answered.status).toBe(202)
        const { done, events } = yield* runTask(feed, taskId)
        expect(done).toMatchObject({ status: "completed", branch: `sam/${taskId}` })
        expect(events.some((e) => e.type === "permission-resolved")).toBe(true)
        expect((yield* branchFile(taskId))("asked.txt")).toBe("asked first\n")
      })
    )

    it.scoped("cancel during a long command stops it; a follow-up keeps the conversation", () =>
      Effect.gen(function* () {
        const fake = yield* startFakeAnthropic
        const { alice, projectId, profileId } = yield* setup(fake, KEY, { taskMode: "conversation" })
        fake.script({
          blocks: [
            {
              type: "tool_use",
              name: "Bash",
              input: { command: "tail -f /dev/null", description: "follow nothing, forever" }
            }
          ]
        })
        const created = yield* api(alice, "POST", `/projects/${projectId}/tasks`, {
          body: { prompt: "remember the word PELICAN, then wait", profileId }
        })
        const taskId = created.body.id as string
        const opened = yield* untilTask(taskId, "has a session", (r) => r.sessionId !== null, "120 seconds")
        const sessionId = opened.sessionId!
        const sql = yield* SqlClient.SqlClient
        yield* waitUntil(
          "the long command runs",
          sql`SELECT 1 FROM session_events WHERE session_id = ${sessionId} AND type = 'tool-call'`.pipe(
            Effect.map((rows) => rows[0])
          ),
          { timeout: "60 seconds" }
        )
        const sleeping = () =>
          execFileSync("pgrep", ["-f", "tail -f /dev/null"], { encoding: "utf8" }).trim().split("\n").filter(Boolean)
            .length
        yield* waitUntil(
          "the long command runs",
          Effect.sync(() => (safe(sleeping) > 0 ? true : undefined))
        )
        const cancelled = yield* api(alice, "POST", `/sessions/${sessionId}/cancel`)
        expect(cancelled.status).toBe(202)
        yield* waitUntil(
          "the turn ends cancelled",
          sql`SELECT 1 FROM session_events WHERE session_id = ${sessionId} AND type = 'cancelled'`.pipe(
            Effect.map((rows) => rows[0])
          ),
          { timeout: "30 seconds" }
        )
        yield* waitUntil(
          "the long command is gone",
          Effect.sync(() => (safe(sleeping) === 0 ? true : undefined)),
          {
            timeout: "20 seconds"
          }
        )
        fake.script({ blocks: [{ type: "text", text: "You asked me to remember a word." }] })
        const before = fake.requests.length
        const prompted = yield* api(alice, "POST", `/sessions/${sessionId}/prompt`, { body: { prompt: "which word?" } })
        expect(prompted.status).toBe(202)
        yield* waitUntil(
          "the follow-up is answered",
          sql`SELECT 1 FROM session_events WHERE session_id = ${sessionId} AND payload::text LIKE '%remember a word%'`.pipe(
            Effect.map((rows) => rows[0])
          ),
          { timeout: "60 seconds" }
        )
        // The agent sent the first prompt along with the follow-up: the conversation survived the cancel.
        const followUp = fake.requests.slice(before).filter((r) => r.main)
        expect(followUp.length).toBeGreaterThan(0)
        expect(JSON.stringify(followUp.at(-1)!.body.messages)).toContain("PELICAN")
        // the agent answered the cancel in time: it was kept, not started again
        expect(yield* agentRestarts(sessionId)).toBe(0)
      })
    )

    it.scoped("after its vm-agent restarts, a follow-up reloads the agent with its credential and conversation", () =>
      Effect.gen(function* () {
        const fake = yield* startFakeAnthropic
        const { alice, projectId, profileId } = yield* setup(fake, KEY, { taskMode: "conversation" })
        fake.script({ blocks: [{ type: "text", text: "Noted: OSPREY." }] })
        const created = yield* api(alice, "POST", `/projects/${projectId}/tasks`, {
          body: { prompt: "remember the word OSPREY", profileId }
        })
        const row = yield* untilTask(
          created.body.id,
          "awaits a follow-up",
          (r) => r.executionStep === "awaiting_followup"
        )
        const before = yield* vmAgentPid(row.nodeId!)
        expect(before).toBeDefined()
        process.kill(before!, "SIGKILL")
        // the local provider starts the node's vm-agent again (ADR 0020)
        yield* waitUntil(
          "the vm-agent runs again",
          vmAgentPid(row.nodeId!).pipe(Effect.map((pid) => (pid !== undefined && pid !== before ? pid : undefined))),
          { timeout: "60 seconds" }
        )
        fake.script({ blocks: [{ type: "text", text: "The word was OSPREY." }] })
        const seen = fake.requests.length
        const sql = yield* SqlClient.SqlClient
        yield* waitUntil(
          "the follow-up is taken and answered",
          Effect.gen(function* () {
            const prompted = yield* api(alice, "POST", `/sessions/${row.sessionId}/prompt`, {
              body: { prompt: "which word?" }
            })
            if (prompted.status !== 202) return undefined
            return true
          }),
          { timeout: "60 seconds", every: "1 second" }
        )
        yield* waitUntil(
          "the answer is in the transcript",
          sql`SELECT 1 FROM session_events WHERE session_id = ${row.sessionId} AND payload::text LIKE '%The word was OSPREY%'`.pipe(
            Effect.map((rows) => rows[0])
          ),
          { timeout: "60 seconds" }
        )
        const after = fake.requests.slice(seen).filter((r) => r.main)
        expect(after.length).toBeGreaterThan(0)
        expect(after.every((r) => r.apiKey === KEY)).toBe(true)
        expect(JSON.stringify(after.at(-1)!.body.messages)).toContain("OSPREY")
        yield* expectSecretKept(KEY)
      })
    )
  }
)
