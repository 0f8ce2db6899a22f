import { Effect, Either, Fiber, SubscriptionRef } from "effect"
import { describe, expect, it } from "vitest"
import { groupAlive, textOf, waitUntil, withDemoHost } from "./acpTestKit.js"

describe("AcpSessionHost with the demo agent", () => {
  it("streams text, thought, plan and tool calls in order with seq 1..n", () =>
    withDemoHost(({ session, events }) =>
      Effect.gen(function* () {
        const result = yield* session.prompt(
          "say Hello there, friend of mine\nthink pondering\nplan a | b | c\ntool Read file"
        )
        expect(result.stopReason).toBe("end_turn")
        expect(events.map((event) => event.seq)).toEqual(events.map((_, i) => i + 1))
        const kinds = events.map((event) => event.type).filter((type, i, all) => type !== all[i - 1])
        expect(kinds).toEqual([
          "agent-started",
          "prompt-started",
          "text",
          "thought",
          "plan",
          "tool-call",
          "tool-call-update",
          "turn-ended"
        ])
        expect(events.filter((event) => event.type === "text").length).toBeGreaterThan(1)
        expect(textOf(events)).toBe("Hello there, friend of mine")
        const plan = events.find((event) => event.type === "plan")
        expect(plan?.type === "plan" && plan.entries.map((entry) => entry.content)).toEqual(["a", "b", "c"])
        expect(yield* SubscriptionRef.get(session.status)).toBe("idle")
      })
    ))

  it("answers a plain sentence with a friendly echo", () =>
    withDemoHost(({ session, events }) =>
      Effect.gen(function* () {
        yield* session.prompt("hello agent")
        expect(textOf(events)).toContain("You said: hello agent")
      })
    ))

  it("says so when there is nothing to cancel", () =>
    withDemoHost(({ session }) =>
      Effect.gen(function* () {
        const result = yield* session.cancel()
        expect(result._tag).toBe("NothingToCancel")
        expect(yield* SubscriptionRef.get(session.status)).toBe("idle")
      })
    ))

  it("keeps reading the agent when handling one of its updates throws", () => {
    let thrown = 0
    return withDemoHost(
      ({ session, events }) =>
        Effect.gen(function* () {
          const result = yield* session.prompt("say boom\nsay after")
          expect(result.stopReason).toBe("end_turn")
          expect(thrown).toBe(1)
          expect(textOf(events)).toContain("after")
          yield* session.prompt("say still here")
          expect(textOf(events)).toContain("still here")
        }),
      {
        onEvent: (event) => {
          if (event.type === "text" && event.text === "boom" && thrown++ === 0) throw new Error("a handler's defect")
        }
      }
    )
  })

  it("ignores garbage on the agent's stdout and keeps the session working", () =>
    withDemoHost(({ session, events }) =>
      Effect.gen(function* () {
        const result = yield* session.prompt("say one\ngarbage\nsay two")
        expect(result.stopReason).toBe("end_turn")
        expect(events.filter((event) => event.type === "agent-output-ignored").length).toBe(3)
        expect(textOf(events)).toBe("one\n\ntwo")
        yield* session.prompt("say still here")
        expect(textOf(events)).toContain("still here")
        expect(events.some((event) => event.type === "crashed")).toBe(false)
      })
    ))

  it("surfaces permission requests and passes the answer back", () =>
    withDemoHost(({ session, events }) =>
      Effect.gen(function* () {
        const turn = yield* Effect.fork(session.prompt("ask-permission Deploy"))
        yield* waitUntil("permission request", () => events.some((event) => event.type === "permission-requested"))
        const request = events.find((event) => event.type === "permission-requested")!
        expect(request.type === "permission-requested" && request.title).toBe("Deploy")
        if (request.type !== "permission-requested") return
        expect(yield* session.answerPermission(request.requestId, "reject")).toBe(true)
        expect((yield* Fiber.join(turn)).stopReason).toBe("end_turn")
        expect(textOf(events)).toContain("Permission for Deploy: reject")
      })
    ))

  it("auto-approves permission requests when asked to", () =>
    withDemoHost(
      ({ session, events }) =>
        Effect.gen(function* () {
          yield* session.prompt("ask-permission Deploy")
          expect(textOf(events)).toContain("Permission for Deploy: allow")
        }),
      { permissions: "auto-approve" }
    ))

  it("kills the process group when the scope closes", async () => {
    let pgid = 0
    await withDemoHost(({ session }) =>
      Effect.sync(() => {
        pgid = session.pgid()!
        expect(groupAlive(pgid)).toBe(true)
      })
    )
    expect(groupAlive(pgid)).toBe(false)
  })

  it("loads an earlier session in a new host, which remembers its prompts", async () => {
    let sessionId = ""
    let lastSeq = 0
    const dir = await withDemoHost(({ session, dir, events }) =>
      Effect.gen(function* () {
        yield* session.prompt("say remember the blue door")
        sessionId = session.acpSessionId()
        lastSeq = events.at(-1)!.seq
        return dir
      })
    )
    await withDemoHost(
      ({ session, events }) =>
        Effect.gen(function* () {
          expect(session.acpSessionId()).toBe(sessionId)
          expect(events[0]).toMatchObject({ type: "agent-started", loaded: true, seq: lastSeq + 1 })
          yield* session.prompt("recall")
          expect(textOf(events)).toContain("1) say remember the blue door")
          expect(events.some((event) => event.type === "update")).toBe(false)
        }),
      { dir, resumeSessionId: sessionId, lastSeq }
    )
  })

  it("restarts a crashed agent within its budget, then fails the session", () =>
    withDemoHost(
      ({ session, events }) =>
        Effect.gen(function* () {
          const first = yield* Effect.either(session.prompt("say about to crash\ncrash"))
          expect(Either.isLeft(first) && first.left._tag).toBe("AgentCrashed")
          if (Either.isLeft(first) && first.left._tag === "AgentCrashed") expect(first.left.exitCode).toBe(3)
          const crashed = events.find((event) => event.type === "crashed")
          expect(crashed?.type === "crashed" && crashed.exitCode).toBe(3)

          const after = yield* session.prompt("recall")
          expect(after.stopReason).toBe("end_turn")
          expect(events.some((event) => event.type === "restarted" && event.reason === "crash")).toBe(true)
          expect(textOf(events)).toContain("1) say about to crash")

          const second = yield* Effect.either(session.prompt("crash"))
          expect(Either.isLeft(second) && second.left._tag).toBe("AgentCrashed")
          yield* session.prompt("say alive again")
          const third = yield* Effect.either(session.prompt("crash"))
          expect(Either.isLeft(third) && third.left._tag).toBe("AgentCrashed")
          yield* waitUntil("failed", () => events.some((event) => event.type === "failed"))
          expect(yield* SubscriptionRef.get(session.status)).toBe("failed")
          const rejected = yield* Effect.either(session.prompt("say hello"))
          expect(Either.isLeft(rejected) && rejected.left._tag).toBe("PromptRejected")
          expect(events.filter((event) => event.type === "restarted").length).toBe(2)
        }),
      { restartBudget: 2 }
    ))
})
