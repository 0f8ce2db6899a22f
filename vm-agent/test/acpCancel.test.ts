import { Effect, Fiber, SubscriptionRef } from "effect"
import { describe, expect, it } from "vitest"
import { startedSince } from "../src/runtime/internal/processGroup.js"
import { groupAlive, groupSignalable, textOf, toolOutputOf, waitUntil, withDemoHost } from "./acpTestKit.js"

const GRACE_MS = 2000
// The shell prints MARKER; the prompt text itself never contains it.
const LONG_RUN = `run echo BE""GUN; sleep 30; echo MAR""KER`

describe("AcpSessionHost cancel", () => {
  it("kills the turn's shell (its orphans too), keeps the agent that answered the cancel, drops later output, and keeps the context", () =>
    withDemoHost(({ session, events }) =>
      Effect.gen(function* () {
        const turn = yield* Effect.fork(session.prompt(LONG_RUN))
        yield* waitUntil("shell output", () => toolOutputOf(events).includes("BEGUN"))
        const pgid = session.pgid()!
        expect(groupAlive(pgid)).toBe(true)

        const result = yield* session.cancel()
        expect(result._tag).toBe("Cancelled")
        if (result._tag !== "Cancelled") return
        expect(result.forced).toBe(false)
        expect(result.stopMs).toBeLessThan(GRACE_MS)
        // The demo agent kills its shell on session/cancel, not the shell's `sleep`: the host kills that.
        expect(startedSince(pgid, 0)).toEqual([])
        expect((yield* Fiber.join(turn)).stopReason).toBe("cancelled")
        expect(yield* SubscriptionRef.get(session.status)).toBe("idle")
        expect(session.pgid()).toBe(pgid)
        expect(groupAlive(pgid)).toBe(true)

        yield* session.prompt("recall")
        expect(textOf(events)).toContain(`1) ${LONG_RUN}`)
        expect(JSON.stringify(events)).not.toContain("MARKER")
        const kinds = events.map((event) => event.type)
        expect(kinds.slice(kinds.indexOf("cancelled"))).toEqual([
          "cancelled",
          "turn-ended",
          "prompt-started",
          ...kinds.slice(kinds.indexOf("prompt-started", kinds.indexOf("cancelled")) + 1)
        ])
        expect(events.map((event) => event.seq)).toEqual(events.map((_, i) => i + 1))
        expect(events.some((event) => event.type === "crashed")).toBe(false)
        // the cancelled turn's tool call, which the agent never finished, ends with its turn (just before it)
        const call = events.find((event) => event.type === "tool-call")
        const ended = events[kinds.indexOf("cancelled") - 1]
        expect(ended).toMatchObject({ type: "tool-call-update", status: "cancelled" })
        expect(ended?.type === "tool-call-update" && call?.type === "tool-call" && ended.toolCallId).toBe(
          call?.type === "tool-call" && call.toolCallId
        )
        // and is the only one: recall's turn ran no tool
        expect(
          events.filter((event) => event.type === "tool-call-update" && event.status === "cancelled")
        ).toHaveLength(1)
      })
    ))

  it("leaves running what an earlier turn started (a background server), killing only the cancelled turn's", () =>
    withDemoHost(({ session, events }) =>
      Effect.gen(function* () {
        yield* session.prompt("run sleep 301 >/dev/null 2>&1 & echo BG=$!")
        const background = Number(/BG=(\d+)/.exec(toolOutputOf(events))![1])
        const turn = yield* Effect.fork(session.prompt(LONG_RUN))
        yield* waitUntil("shell output", () => toolOutputOf(events).includes("BEGUN"))
        const pgid = session.pgid()!
        expect(startedSince(pgid, 0).length).toBeGreaterThan(1)
        const result = yield* session.cancel()
        expect(result._tag === "Cancelled" && !result.forced).toBe(true)
        expect((yield* Fiber.join(turn)).stopReason).toBe("cancelled")
        // the earlier turn's process alone is left (closing the session kills the whole group, it too)
        expect(startedSince(pgid, 0)).toEqual([background])
      })
    ))

  it("kills an agent that ignores session/cancel when the grace period ends, and mutes what it says meanwhile", () =>
    withDemoHost(({ session, events }) =>
      Effect.gen(function* () {
        const script = `ignore-cancel\nrun echo BE""GUN; sleep 0.3; echo MAR""KER; sleep 30\nsay MAR""KER`
        const turn = yield* Effect.fork(session.prompt(script))
        yield* waitUntil("shell output", () => toolOutputOf(events).includes("BEGUN"))
        const pgid = session.pgid()!

        const result = yield* session.cancel()
        expect(result._tag === "Cancelled" && result.forced).toBe(true)
        if (result._tag !== "Cancelled") return
        expect(result.stopMs).toBeGreaterThanOrEqual(GRACE_MS - 50)
        expect(result.stopMs).toBeLessThan(GRACE_MS + 5000)
        expect(groupAlive(pgid)).toBe(false)
        yield* waitUntil("zombies reaped (ESRCH)", () => !groupSignalable(pgid), 5000)
        expect((yield* Fiber.join(turn)).stopReason).toBe("cancelled")
        expect(yield* SubscriptionRef.get(session.status)).toBe("idle")

        yield* session.prompt("recall")
        expect(textOf(events)).toContain("1) ignore-cancel")
        expect(JSON.stringify(events)).not.toContain("MARKER")
      })
    ))

  it("ends a turn as its agent ended it when that answer crosses the cancel, with all it said meanwhile", () =>
    withDemoHost(({ session, events }) =>
      Effect.gen(function* () {
        // The agent reads the cancel and goes on to the end of its turn, within the grace: its answer is `end_turn`,
        // as an agent's is that finished before the cancel reached it.
        const turn = yield* Effect.fork(session.prompt("ignore-cancel\nsay STARTED\nsleep 300\nsay AND FINISHED"))
        yield* waitUntil("its first words", () => textOf(events).includes("STARTED"))
        const pgid = session.pgid()!
        const result = yield* session.cancel()
        expect(result).toEqual({ _tag: "Ended", stopReason: "end_turn" })
        expect((yield* Fiber.join(turn)).stopReason).toBe("end_turn")
        // what it said while the cancel waited for its answer is shown, and the turn ends as it said
        expect(textOf(events)).toContain("AND FINISHED")
        expect(events.some((event) => event.type === "cancelled")).toBe(false)
        expect(events.at(-1)).toMatchObject({ type: "turn-ended", stopReason: "end_turn" })
        expect(yield* SubscriptionRef.get(session.status)).toBe("idle")
        // the agent stays, and its next turn is heard
        expect(session.pgid()).toBe(pgid)
        expect(events.some((event) => event.type === "restarted" || event.type === "crashed")).toBe(false)
        yield* session.prompt("say NEXT")
        expect(textOf(events)).toContain("NEXT")
        expect(events.map((event) => event.seq)).toEqual(events.map((_, i) => i + 1))
      })
    ))

  it("keeps at most `heldMax` of what such an agent says meanwhile, and says how much more it did not keep", () =>
    withDemoHost(
      ({ session, events }) =>
        Effect.gen(function* () {
          const turn = yield* Effect.fork(
            session.prompt("ignore-cancel\nsay STARTED\nsleep 300\nsay ONE\nsay TWO\nsay THREE\nsay FOUR")
          )
          yield* waitUntil("its first words", () => textOf(events).includes("STARTED"))
          expect(yield* session.cancel()).toEqual({ _tag: "Ended", stopReason: "end_turn" })
          expect((yield* Fiber.join(turn)).stopReason).toBe("end_turn")
          expect(textOf(events)).toContain("ONE")
          expect(textOf(events)).not.toContain("FOUR")
          const dropped = events.find((event) => event.type === "agent-output-ignored")
          expect(dropped).toMatchObject({ line: expect.stringMatching(/^\d+ more updates .* were not kept$/) })
          expect(events.at(-1)).toMatchObject({ type: "turn-ended", stopReason: "end_turn" })
        }),
      { heldMax: 2 }
    ))

  it("does not spend the crash-restart budget on cancels that restart the agent", () =>
    withDemoHost(
      ({ session, events }) =>
        Effect.gen(function* () {
          for (let i = 0; i < 2; i++) {
            const turn = yield* Effect.fork(session.prompt("ignore-cancel\nsleep 30000"))
            yield* waitUntil("prompt running", () => events.filter((e) => e.type === "prompt-started").length === i + 1)
            expect((yield* session.cancel())._tag).toBe("Cancelled")
            yield* Fiber.join(turn)
          }
          const result = yield* session.prompt("say still going")
          expect(result.stopReason).toBe("end_turn")
          expect(events.filter((event) => event.type === "restarted").length).toBe(2)
          expect(events.some((event) => event.type === "failed")).toBe(false)
        }),
      { restartBudget: 1 }
    ))

  it("answers pending permission requests with cancelled on cancel", () =>
    withDemoHost(({ session, events }) =>
      Effect.gen(function* () {
        const turn = yield* Effect.fork(session.prompt("ask-permission Deploy"))
        yield* waitUntil("permission request", () => events.some((event) => event.type === "permission-requested"))
        expect((yield* session.cancel())._tag).toBe("Cancelled")
        expect((yield* Fiber.join(turn)).stopReason).toBe("cancelled")
        const resolved = events.find((event) => event.type === "permission-resolved")
        expect(resolved?.type === "permission-resolved" && resolved.outcome).toBe("cancelled")
      })
    ))

  it("ends a turn cancelled that the cancel came before (its prompt on its way), and the agent never gets it", () =>
    withDemoHost(({ session, events }) =>
      Effect.gen(function* () {
        // The node took the prompt's command and saves its record; the cancel comes meanwhile (issue 12: it was
        // refused as "no prompt in flight" and the turn then ran to its end).
        const ticket = session.reserve()
        const result = yield* session.cancel()
        expect(result._tag).toBe("Cancelled")
        expect((yield* session.prompt("say TOO LATE", ticket)).stopReason).toBe("cancelled")
        expect(yield* SubscriptionRef.get(session.status)).toBe("idle")
        // the same whenever it comes while the turn starts: before the agent has the prompt, or after
        const second = session.reserve()
        const turn = yield* Effect.fork(session.prompt("say BEFORE\nsleep 30000\nsay AFTER", second))
        expect((yield* session.cancel())._tag).toBe("Cancelled")
        expect((yield* Fiber.join(turn)).stopReason).toBe("cancelled")
        // nothing is left to cancel, and the agent goes on without either prompt's end
        expect((yield* session.cancel())._tag).toBe("NothingToCancel")
        yield* session.prompt("recall")
        expect(textOf(events)).not.toContain("say TOO LATE")
        expect(textOf(events)).not.toContain("AFTER")
        const kinds = events.map((event) => event.type)
        expect(kinds.filter((kind) => kind === "cancelled")).toHaveLength(2)
        expect(events.filter((event) => event.type === "turn-ended").map((event) => event.stopReason)).toEqual([
          "cancelled",
          "cancelled",
          "end_turn"
        ])
      })
    ))
})
