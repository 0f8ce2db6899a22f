import { execFileSync } from "node:child_process"
import { rm } from "node:fs/promises"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { SqlClient } from "@effect/sql"
import type { UserId } from "@sam/bus"
import { Auth } from "@sam/gateway"
import { FeedClient } from "@sam/gateway/client"
import { Effect, Exit, Scope } from "effect"
import { afterAll, expect } from "vitest"
import * as DockerEngine from "../../infra/src/DockerEngine.js"
import * as WorkspaceImage from "../../infra/src/WorkspaceImage.js"
import { waitUntil } from "./Env.js"
import { GatewayUrl, http } from "./GatewayHarness.js"
import { tempDir } from "./TestStack.js"

const root = resolve(fileURLToPath(new URL("../..", import.meta.url)))

/**
 * For boot tests: a private dockerd with the workspace image (or the reason there is none), and a
 * current build in dist/ (the artifact the gateway serves is made from it).
 */
export const bootEngine = async (label: string) => {
  execFileSync(process.execPath, [join(root, "infra/build.mjs"), "--if-stale"], { stdio: "inherit" })
  const dockerDir = await tempDir(`sam-${label}-docker-`)
  const scope = Effect.runSync(Scope.make())
  const engine = await Effect.runPromise(
    Effect.gen(function* () {
      const engine = yield* DockerEngine.start({ dir: join(dockerDir, "engine"), onProgress: () => {} })
      const image = yield* WorkspaceImage.ensure(engine, {
        onProgress: (line) => process.stdout.write(`[${label}] ${line}\n`)
      })
      return { socketPath: engine.socketPath, image }
    }).pipe(Scope.extend(scope), Effect.either)
  )
  afterAll(async () => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    const mounted = await DockerEngine.mountsUnder(dockerDir)
    await rm(dockerDir, { recursive: true, force: true }).catch((e) => console.warn(`[${label}] ${e}`))
    // the engine stopped leaves nothing mounted under its directory (a host-network container's netns)
    expect(mounted).toEqual([])
  })
  const skipReason = engine._tag === "Left" ? `no Docker engine: ${engine.left.message}` : undefined
  if (skipReason && process.env.SAM_DOCKER_READY === "1")
    throw new Error(`the prepared Docker engine failed: ${skipReason}`)
  if (skipReason) console.warn(`[${label}] SKIPPED: ${skipReason}`)
  return { engine: engine._tag === "Right" ? engine.right : undefined, skipReason }
}

/** An API token for a user made by seedProject. */
export const tokenOf = (userId: UserId) =>
  Effect.flatMap(Auth, (auth) => auth.createToken(userId, { name: "boot-test" })).pipe(
    Effect.provide(Auth.Default),
    Effect.map((t) => t.token)
  )

/** The node is ready: its vm-agent reported ready and heartbeats. */
export const nodeReady = (nodeId: string, timeout: `${number} seconds` = "120 seconds") =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    waitUntil(
      `node ${nodeId} to be ready`,
      sql<{ status: string }>`
        SELECT status FROM nodes WHERE id = ${nodeId} AND agent_ready_at IS NOT NULL
          AND last_heartbeat_at > now() - interval '20 seconds'`.pipe(Effect.map((rows) => rows[0])),
      { timeout, every: "250 millis" }
    )
  )

/**
 * A demo-agent task submitted over the HTTP API as the user; its transcript read from the live feed
 * (snapshot, catch-up and live events) until the text appears. Returns the task's final row.
 */
export const taskThroughFeed = (projectId: string, token: string, say: string, profileId?: string) =>
  Effect.gen(function* () {
    const url = yield* GatewayUrl
    const sql = yield* SqlClient.SqlClient
    const created = yield* http("POST", `/api/v1/projects/${projectId}/tasks`, {
      token,
      body: {
        prompt: `say ${say}\nrun echo from-the-machine > MACHINE.txt`,
        ...(profileId === undefined ? { agent: "demo" } : { profileId })
      }
    })
    if (created.status !== 201) throw new Error(`task create: ${created.status} ${JSON.stringify(created.body)}`)
    const taskId = created.body.id as string
    const task = yield* waitUntil(
      "the task to settle",
      sql<{ status: string; sessionId: string | null; nodeId: string | null; errorReason: string | null }>`
        SELECT status, session_id, node_id, error_reason FROM tasks WHERE id = ${taskId}`.pipe(
        Effect.map((rows) =>
          rows[0] && ["completed", "failed", "cancelled"].includes(rows[0].status) ? rows[0] : undefined
        )
      ),
      { timeout: "120 seconds", every: "250 millis" }
    ).pipe(
      Effect.tapError(() =>
        sql`SELECT status, execution_step, node_id, error_reason FROM tasks WHERE id = ${taskId}`.pipe(
          Effect.flatMap((rows) => Effect.sync(() => console.error(`[boot] the task: ${JSON.stringify(rows)}`)))
        )
      )
    )
    const texts: Array<string> = []
    const feed = new FeedClient({
      baseUrl: url,
      token,
      sessions: task.sessionId === null ? [] : [{ sessionId: task.sessionId }],
      onFrame: (frame) => {
        if (frame.type === "session.event") texts.push(JSON.stringify(frame))
      }
    })
    const seen = yield* waitUntil(
      "the agent's words on the feed",
      Effect.sync(() => texts.find((t) => t.includes(say))),
      { timeout: "30 seconds", every: "100 millis" }
    ).pipe(Effect.ensuring(Effect.sync(() => feed.close())))
    return { taskId, task, seen, feedEvents: texts.length }
  })
