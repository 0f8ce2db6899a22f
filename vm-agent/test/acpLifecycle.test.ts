import * as Fs from "node:fs"
import * as Path from "node:path"
import { Chunk, Effect, Either, Fiber, Stream, SubscriptionRef } from "effect"
import { describe, expect, it } from "vitest"
import { AcpSessionHost } from "../src/acp/AcpSessionHost.js"
import { groupAlive, tempDir, textOf, waitUntil, withDemoHost } from "./acpTestKit.js"

describe("AcpSessionHost lifecycle", () => {
  it("fails to start with a typed error when the harness cannot run", async () => {
    const result = await Effect.gen(function* () {
      const host = yield* AcpSessionHost
      return yield* host.start({ command: { argv: ["/nonexistent/agent"], cwd: tempDir() } })
    }).pipe(Effect.scoped, Effect.either, Effect.provide(AcpSessionHost.Default), Effect.runPromise)
    expect(Either.isLeft(result) && result.left._tag === "AgentStartError" && result.left.reason).toBe("spawn")
  })

  it("restarts an agent that dies while idle", () =>
    withDemoHost(({ session, events }) =>
      Effect.gen(function* () {
        const first = session.pgid()!
        yield* session.prompt("run (sleep 0.3; kill -9 $PPID) >/dev/null 2>&1 &")
        yield* waitUntil("restart", () => events.some((event) => event.type === "restarted"))
        const crashed = events.find((event) => event.type === "crashed")
        expect(crashed?.type === "crashed" && crashed.signal).toBe("SIGKILL")
        expect(groupAlive(first)).toBe(false)
        yield* session.prompt("recall")
        expect(textOf(events)).toContain("1) run (sleep 0.3")
      })
    ))

  it("fails the session when restarts keep failing", () => {
    const dir = tempDir()
    return withDemoHost(
      ({ session, events }) =>
        Effect.gen(function* () {
          yield* Effect.either(session.prompt("crash"))
          yield* waitUntil("failed", () => events.some((event) => event.type === "failed"))
          expect(yield* SubscriptionRef.get(session.status)).toBe("failed")
          expect(events.filter((event) => event.type === "crashed").length).toBe(3)
          expect(events.some((event) => event.type === "restarted")).toBe(false)
        }),
      {
        dir,
        restartBudget: 2,
        // Losing the agent's state file makes every session/load after the crash fail.
        onEvent: (event) => {
          if (event.type === "crashed") Fs.rmSync(Path.join(dir, ".sam-demo-agent"), { recursive: true, force: true })
        }
      }
    )
  })

  it("after a forced cancel whose session/load the agent refuses, starts a new session and says the context is lost", () => {
    const dir = tempDir()
    return withDemoHost(
      ({ session, events }) =>
        Effect.gen(function* () {
          yield* session.prompt("say remember ALBATROSS")
          // it ignores the cancel, so it is killed and started again with session/load
          const turn = yield* Effect.fork(session.prompt("ignore-cancel\nsleep 30000\nsay never"))
          yield* waitUntil("prompting", () => Effect.runSync(SubscriptionRef.get(session.status)) === "prompting")
          const result = yield* session.cancel()
          expect(result._tag).toBe("Cancelled")
          expect((yield* Fiber.join(turn)).stopReason).toBe("cancelled")
          const restarted = events.find((event) => event.type === "restarted")
          expect(restarted?.type === "restarted" && restarted.contextLost).toBe(true)
          expect(events.some((event) => event.type === "crashed" || event.type === "failed")).toBe(false)
          yield* session.prompt("recall")
          // the new session has no earlier prompts
          expect(textOf(events)).toMatch(/No earlier prompts\.$/)
        }),
      {
        dir,
        // Losing the agent's state file when the turn is cancelled makes the session/load that follows fail.
        onEvent: (event) => {
          if (event.type === "cancelled") Fs.rmSync(Path.join(dir, ".sam-demo-agent"), { recursive: true, force: true })
        }
      }
    )
  })

  it("refuses a second prompt while one runs, and any prompt after stop", () =>
    withDemoHost(({ session }) =>
      Effect.gen(function* () {
        const turn = yield* Effect.fork(session.prompt("sleep 300\nsay done"))
        yield* waitUntil("prompting", () => Effect.runSync(SubscriptionRef.get(session.status)) === "prompting")
        const busy = yield* Effect.either(session.prompt("say hi"))
        expect(Either.isLeft(busy) && busy.left._tag === "PromptRejected" && busy.left.reason).toBe("busy")
        expect((yield* Fiber.join(turn)).stopReason).toBe("end_turn")
        const pgid = session.pgid()!
        yield* session.stop()
        expect(groupAlive(pgid)).toBe(false)
        const stopped = yield* Effect.either(session.prompt("say hi"))
        expect(Either.isLeft(stopped) && stopped.left._tag === "PromptRejected" && stopped.left.reason).toBe("stopped")
      })
    ))

  it("offers the events as a Stream", () =>
    withDemoHost(({ session }) =>
      Effect.gen(function* () {
        const events$ = yield* session.subscribe
        const collected = yield* events$.pipe(
          Stream.takeUntil((event) => event.type === "turn-ended"),
          Stream.runCollect,
          Effect.fork
        )
        yield* session.prompt("say streamed words here")
        const events = Chunk.toReadonlyArray(yield* Fiber.join(collected))
        expect(events[0]?.type).toBe("prompt-started")
        expect(textOf(events)).toBe("streamed words here")
        expect(events.at(-1)?.type).toBe("turn-ended")
        expect(events.map((event) => event.seq)).toEqual(events.map((_, i) => events[0]!.seq + i))
      })
    ))
})
