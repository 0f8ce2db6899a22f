import { rm } from "node:fs/promises"
import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Actors, ControlPlane } from "@sam/actors"
import { Domain, makeId } from "@sam/bus"
import { Effect, Exit, Scope } from "effect"
import { afterAll, describe, expect } from "vitest"
import * as DockerEngine from "../../../infra/src/DockerEngine.js"
import * as WorkspaceImage from "../../../infra/src/WorkspaceImage.js"
import { makeControlPlaneEnv, seedProject } from "../../src/ControlPlaneHarness.js"
import { waitUntil } from "../../src/Env.js"
import { tempDir } from "../../src/TestStack.js"

/**
 * The end-to-end task with the Docker runtime: the local provider's node creates a container per
 * workspace on a private dockerd, and the demo agent runs inside it. Skipped with the reason when no
 * engine can be had (unless SAM_DOCKER_READY=1, when that is a failure).
 */
const { ControlProtocol: C } = Domain
const dockerDir = await tempDir("sam-cp-docker-")
const engineScope = Effect.runSync(Scope.make())
const engine = await Effect.runPromise(
  Effect.gen(function* () {
    const engine = yield* DockerEngine.start({ dir: join(dockerDir, "engine"), onProgress: () => {} })
    yield* WorkspaceImage.ensure(engine, { onProgress: (line) => process.stdout.write(`[task docker] ${line}\n`) })
    return engine.socketPath
  }).pipe(Scope.extend(engineScope), Effect.either)
)
const skipReason = engine._tag === "Left" ? `no Docker engine: ${engine.left.message}` : undefined
if (skipReason && process.env.SAM_DOCKER_READY === "1")
  throw new Error(`the prepared Docker engine failed: ${skipReason}`)
if (skipReason) console.warn(`[task docker] SKIPPED: ${skipReason}`)

afterAll(async () => {
  await Effect.runPromise(Scope.close(engineScope, Exit.void))
  await rm(dockerDir, { recursive: true, force: true })
})

describe.skipIf(skipReason)(`a task with the Docker runtime${skipReason ? ` (SKIPPED: ${skipReason})` : ""}`, () => {
  const socket = engine._tag === "Right" ? engine.right : ""
  layer(makeControlPlaneEnv({ runtime: "docker", dockerSocket: socket }), {
    excludeTestServices: true,
    timeout: 120_000
  })("end to end", (it) => {
    it.effect(
      "runs in a container, streams the agent's output in order, and commits to a new branch",
      () =>
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          const { projectId, userId } = yield* seedProject()
          const taskId = makeId("task")
          yield* Actors.ask(
            ControlPlane.TaskRef,
            taskId,
            C.TaskSubmit.make({
              taskId,
              projectId: projectId as never,
              userId: userId as never,
              prompt: "say inside a container\nrun pwd; echo x > X.txt"
            })
          )
          const done = yield* waitUntil(
            "the task to settle",
            sql<{ status: string; branch: string | null; sessionId: string; errorReason: string | null }>`
                SELECT status, branch, session_id, error_reason FROM tasks WHERE id = ${taskId}`.pipe(
              Effect.map((rows) => (rows[0] && ["completed", "failed"].includes(rows[0].status) ? rows[0] : undefined))
            ),
            { timeout: "90 seconds", every: "200 millis" }
          )
          expect(done).toMatchObject({ status: "completed", branch: `sam/${taskId}` })
          const workspace = yield* sql<{ runtime: string }>`SELECT runtime FROM workspaces WHERE task_id = ${taskId}`
          expect(workspace[0]?.runtime).toBe("docker")
          const events = yield* sql<{ seq: string; payload: unknown }>`
              SELECT seq, payload FROM session_events WHERE session_id = ${done.sessionId} ORDER BY seq`
          expect(events.map((e) => Number(e.seq))).toEqual(events.map((_, i) => i + 1))
          const text = JSON.stringify(events.map((e) => e.payload))
          expect(text).toContain("inside a container")
          expect(text).toContain("/workspace")
        }),
      120_000
    )
  })
})
