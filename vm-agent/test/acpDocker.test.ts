import { rm } from "node:fs/promises"
import { join } from "node:path"
import { Effect, Exit, Fiber, Schedule, Scope, SubscriptionRef } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import * as DockerEngine from "../../infra/src/DockerEngine.js"
import * as WorkspaceImage from "../../infra/src/WorkspaceImage.js"
import { type AcpSession, AcpSessionHost, type SessionHostOptions } from "../src/acp/AcpSessionHost.js"
import type { SessionEvent } from "../src/acp/SessionEvent.js"
import { workspaceSpawner } from "../src/acp/WorkspaceAgent.js"
import { demoAgentCommandInContainer } from "../src/demo/DemoAgentCommand.js"
import { DEMO_AGENT_IN_CONTAINER, makeDockerRuntime, NODE_IN_CONTAINER } from "../src/runtime/DockerRuntime.js"
import { textOf, toolOutputOf, waitUntil } from "./acpTestKit.js"
import { makeRepo, run, tempDir } from "./runtimeFixtures.js"

/**
 * ACP sessions whose agent runs inside a Docker workspace: the demo agent started with the container's node from
 * the read-only app mount, its process group signalled and watched inside the container. A dockerd of our own, as
 * in runtime.docker.test.ts; skipped with the reason when no engine can be had (unless SAM_DOCKER_READY=1).
 */
const dir = await tempDir("sam-acp-docker-")
const scope = Effect.runSync(Scope.make())
const engine = await Effect.runPromise(
  Effect.gen(function* () {
    const engine = yield* DockerEngine.start({ dir: join(dir, "engine"), onProgress: () => {} })
    const image = yield* WorkspaceImage.ensure(engine, {
      onProgress: (line) => process.stdout.write(`[acp docker test] ${line}\n`)
    })
    return { socketPath: engine.socketPath, image }
  }).pipe(Scope.extend(scope), Effect.either)
)
const skipReason = engine._tag === "Left" ? `no Docker engine: ${engine.left.message}` : undefined
if (skipReason && process.env.SAM_DOCKER_READY === "1")
  throw new Error(`the prepared Docker engine failed: ${skipReason}`)
if (skipReason) console.warn(`[acp docker test] SKIPPED: ${skipReason}`)

afterAll(async () => {
  await Effect.runPromise(Scope.close(scope, Exit.void))
  await rm(dir, { recursive: true, force: true })
})

const GRACE_MS = 2000
const LONG_RUN = `run echo BE""GUN; sleep 30; echo MAR""KER`

describe.skipIf(skipReason)(
  `ACP sessions in a Docker workspace${skipReason ? ` (SKIPPED: ${skipReason})` : ""}`,
  () => {
    const socketPath = engine._tag === "Right" ? engine.right.socketPath : ""
    const image = engine._tag === "Right" ? engine.right.image : ""
    const runtime = makeDockerRuntime({ dataDir: join(dir, "node"), socketPath, image })
    const ws = `ws_acp_${Math.random().toString(36).slice(2, 8)}`
    const ready = (async () => {
      const repo = await makeRepo(join(dir, "repo"))
      const started = Date.now()
      const info = await run(runtime.create({ workspaceId: ws, repoUrl: repo }))
      process.stdout.write(`[acp docker test] workspace created in ${Date.now() - started} ms\n`)
      if (info.status !== "running") throw new Error(`workspace ${info.status}: ${info.reason}`)
    })()
    const sh = (script: string) => run(runtime.exec(ws, ["/bin/sh", "-c", script]))
    /** processes in the container whose command line starts with `sleep 30` */
    const sleepsLeft = async () =>
      Number(
        (
          await sh(
            "n=0; for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f 2>/dev/null | grep -q '^sleep 30' && n=$((n+1)); done; echo $n"
          )
        ).stdout.trim()
      )

    const withSession = <A, E>(
      body: (s: { session: AcpSession; events: Array<SessionEvent> }) => Effect.Effect<A, E, Scope.Scope>,
      options: Partial<SessionHostOptions> = {}
    ) =>
      Effect.gen(function* () {
        yield* Effect.promise(() => ready)
        const host = yield* AcpSessionHost
        const events: Array<SessionEvent> = []
        const startedAt = Date.now()
        const session = yield* host.start({
          command: demoAgentCommandInContainer({
            node: NODE_IN_CONTAINER,
            bundle: DEMO_AGENT_IN_CONTAINER,
            cwd: "/workspace",
            env: { SAM_DEMO_AGENT_STATE_DIR: `/home/sam/.sam/agents/${Math.random().toString(36).slice(2, 8)}` }
          }),
          spawn: workspaceSpawner(runtime, ws),
          cancelGrace: `${GRACE_MS} millis`,
          restartBackoff: "50 millis",
          ...options,
          onEvent: (event) => void events.push(event)
        })
        process.stdout.write(`[acp docker test] agent started in the container in ${Date.now() - startedAt} ms\n`)
        return yield* body({ session, events })
      }).pipe(Effect.scoped, Effect.provide(AcpSessionHost.Default), Effect.runPromise)

    it("a workspace process's group is seen, signalled and watched inside the container, also after its leader ended", async () => {
      await ready
      await run(
        Effect.scoped(
          Effect.gen(function* () {
            const proc = yield* runtime.spawn(ws, ["/bin/sh", "-c", "sleep 30 & echo started"])
            const pgid = yield* proc.pgid
            expect(pgid).toBeGreaterThan(1)
            expect(yield* proc.exitCode).toBe(0)
            // the leader is gone; its orphan is still in the group
            expect(yield* proc.groupAlive).toBe(true)
            yield* proc.killGroup("SIGKILL")
            const gone = yield* Effect.retry(
              proc.groupAlive.pipe(Effect.flatMap((alive) => (alive ? Effect.fail("alive") : Effect.void))),
              { times: 40, schedule: Schedule.spaced("25 millis") }
            ).pipe(Effect.either)
            expect(gone._tag).toBe("Right")
          })
        )
      )
      expect(await sleepsLeft()).toBe(0)
    })

    it("a prompt streams events from the agent running in the container", () =>
      withSession(({ session, events }) =>
        Effect.gen(function* () {
          const started = Date.now()
          const result = yield* session.prompt("run pwd; cat README.md; ls -A /opt/sam/app")
          const ms = Date.now() - started
          process.stdout.write(`[acp docker test] prompt with a shell in the container: ${ms} ms\n`)
          expect(result.stopReason).toBe("end_turn")
          const output = toolOutputOf(events)
          expect(output).toContain("/workspace")
          expect(output).toContain("hello from the repo")
          // of our code, the container has the demo agent's bundle only (ADR 0049)
          expect(output).toContain("demo-agent.mjs")
          expect(output).not.toContain("node_modules")
          const t2 = Date.now()
          yield* session.prompt("say hi")
          process.stdout.write(`[acp docker test] a 'say' prompt: ${Date.now() - t2} ms\n`)
          expect(textOf(events)).toContain("hi")
          const startedEvent = events.find((e) => e.type === "agent-started")
          expect(startedEvent?.type === "agent-started" && startedEvent.pid).toBe(session.pgid())
        })
      ))

    it("cancel kills the turn's processes inside the container within the grace; the agent and its context are kept", () =>
      withSession(({ session, events }) =>
        Effect.gen(function* () {
          const turn = yield* Effect.fork(session.prompt(LONG_RUN))
          yield* waitUntil("shell output", () => toolOutputOf(events).includes("BEGUN"), 20_000)
          expect(yield* Effect.promise(sleepsLeft)).toBe(1)
          const pgid = session.pgid()!

          const result = yield* session.cancel()
          expect(result._tag).toBe("Cancelled")
          if (result._tag !== "Cancelled") return
          process.stdout.write(
            `[acp docker test] cancel to the turn's processes gone in the container: ${result.stopMs} ms\n`
          )
          expect(result.forced).toBe(false)
          expect(result.stopMs).toBeLessThan(GRACE_MS)
          expect(yield* Effect.promise(sleepsLeft)).toBe(0)
          expect((yield* Fiber.join(turn)).stopReason).toBe("cancelled")
          expect(yield* SubscriptionRef.get(session.status)).toBe("idle")
          // the agent answered the cancel in time: it goes on, no restart
          expect(session.pgid()).toBe(pgid)
          expect(events.some((event) => event.type === "restarted")).toBe(false)

          yield* session.prompt("recall")
          expect(textOf(events)).toContain(`1) ${LONG_RUN}`)
          expect(JSON.stringify(events)).not.toContain("MARKER")
          expect(events.some((event) => event.type === "crashed")).toBe(false)
          expect(events.map((event) => event.seq)).toEqual(events.map((_, i) => i + 1))
        })
      ))

    it("an agent that ignores cancel is killed with its group when the grace ends", () =>
      withSession(({ session, events }) =>
        Effect.gen(function* () {
          const script = `ignore-cancel\nrun echo BE""GUN; sleep 30; echo MAR""KER\nsay MAR""KER`
          const turn = yield* Effect.fork(session.prompt(script))
          yield* waitUntil("shell output", () => toolOutputOf(events).includes("BEGUN"), 20_000)
          const result = yield* session.cancel()
          expect(result._tag === "Cancelled" && result.forced).toBe(true)
          if (result._tag !== "Cancelled") return
          process.stdout.write(`[acp docker test] forced cancel: ${result.stopMs} ms\n`)
          expect(result.stopMs).toBeGreaterThanOrEqual(GRACE_MS - 50)
          expect(result.stopMs).toBeLessThan(GRACE_MS + 2000)
          expect(yield* Effect.promise(sleepsLeft)).toBe(0)
          expect((yield* Fiber.join(turn)).stopReason).toBe("cancelled")
          yield* session.prompt("recall")
          expect(textOf(events)).toContain("1) ignore-cancel")
          expect(JSON.stringify(events)).not.toContain("MARKER")
        })
      ))

    it("closing the session's scope leaves no agent process in the container", async () => {
      await ready
      const left = await sh(
        "n=0; for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f 2>/dev/null | grep -q 'demo/mai''n.ts' && n=$((n+1)); done; echo $n"
      )
      expect(left.stdout.trim()).toBe("0")
      await run(runtime.delete(ws))
    })
  }
)
