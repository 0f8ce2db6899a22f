import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { Actors, ControlPlane, NatsAccounts } from "@sam/actors"
import { Domain, makeId } from "@sam/bus"
import { Hetzner, LocalProvider, NodeProviders } from "@sam/infra"
import { Migrations } from "@sam/sql"
import { Context, Effect, Layer } from "effect"
import { afterAll } from "vitest"
import type { NodeBoot } from "../../infra/src/cloud/NodeBoot.js"
import { freshDatabase, sqlLayer, waitUntil } from "./Env.js"
import { type PrivateNats, startPrivateNats } from "./PrivateNats.js"
import { scopedTempDir, tempDir } from "./TestStack.js"
import { makeRepo } from "./VmAgentProcess.js"

/**
 * The whole control plane in this process (actor runtime, ingress, provisioner) with the local
 * provider spawning real vm-agent processes (host runtime), on a private nats-server and a fresh
 * database. The test gets `Nats` and `SqlClient`.
 */
export const makeControlPlaneEnv = (options: {
  readonly runtime: "host" | "docker"
  readonly dockerSocket?: string
  /** a private nats-server started by the caller (who needs its URL or signing key); else one of its own */
  readonly nats?: PrivateNats
  /** node JWT lifetime (tests of renewal shorten it) */
  readonly nodeCredsTtlSeconds?: number
  /**
   * how long a node waits for an agent to end a cancelled turn before it stops it (`SAM_NODE_CANCEL_GRACE_MS`):
   * 1.5 s here, so tests of an agent that ignores a cancel are quick; a real agent's tests give it the
   * default 5 s, which a loaded machine may need
   */
  readonly cancelGraceMs?: number
  /**
   * Hetzner nodes too (ADR 0026): the provider against this API root (a `FakeHetzner`'s `url`), with this
   * boot (`NodeBoot`: the live one, or a stand-in that renders fixed user data)
   */
  readonly hetzner?: {
    readonly apiUrl: string
    readonly nodeBoot: Layer.Layer<NodeBoot, never, SqlClient.SqlClient>
    readonly policy?: Hetzner.CreateServer.RetryPolicy
  }
}) =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      const nats = options.nats ?? (yield* startPrivateNats)
      // the nodes' data (workspaces, logs), deleted once the nodes have stopped (finalizers run last first)
      const dir = yield* scopedTempDir("sam-cp-")
      const sql = sqlLayer(yield* Effect.promise(freshDatabase))
      const connections = Layer.merge(nats.layer, sql)
      const accounts = NatsAccounts.layer({
        natsUrl: nats.url,
        systemCreds: nats.systemCreds,
        authority: nats.authority
      })
      const base = Layer.merge(connections, accounts.pipe(Layer.provide(connections)))
      yield* Migrations.migrate().pipe(Effect.provide(sql))
      const provider = LocalProvider.layer({
        dataDir: dir,
        natsUrl: nats.url,
        ...(options.nodeCredsTtlSeconds === undefined ? {} : { credsTtlSeconds: options.nodeCredsTtlSeconds }),
        runtime: options.runtime,
        env: {
          SAM_NODE_HEARTBEAT_MS: "500",
          SAM_NODE_CANCEL_GRACE_MS: String(options.cancelGraceMs ?? 1500),
          SAM_ACP_RESTART_BACKOFF: "200 millis",
          ...(options.dockerSocket === undefined ? {} : { SAM_DOCKER_SOCKET: options.dockerSocket })
        }
      })
      const hetzner =
        options.hetzner === undefined
          ? undefined
          : Hetzner.Provider.layer({
              apiUrl: options.hetzner.apiUrl,
              ...(options.hetzner.policy === undefined ? {} : { policy: options.hetzner.policy })
            }).pipe(Layer.provide(options.hetzner.nodeBoot))
      const providers = NodeProviders.layer(provider, hetzner)
      const controlPlane = ControlPlane.layer({
        runtime: { leaseTtl: "3 seconds", pollEvery: "100 millis" },
        // A lost turn is ended after 10 s without a sign of life (ADR 0021), not the default minute.
        session: { healEvery: "2 seconds", staleAfter: "10 seconds" },
        ...(options.nodeCredsTtlSeconds === undefined ? {} : { nodeCredsTtlSeconds: options.nodeCredsTtlSeconds })
      })
      const nodes = Layer.succeed(LocalNodes, { dir: join(dir, "nodes"), natsUrl: nats.url })
      return Layer.mergeAll(
        base,
        nodes,
        controlPlane.pipe(Layer.provide(Layer.merge(providers.pipe(Layer.provide(base)), base)))
      )
    })
  )

/**
 * Where the local provider keeps its nodes (`<dir>/<nodeId>/`: the credentials it minted for the
 * node, its data, its log) and the NATS server they connect to: for a test that acts as a node.
 */
export class LocalNodes extends Context.Tag("test/LocalNodes")<
  LocalNodes,
  { readonly dir: string; readonly natsUrl: string }
>() {}

export const ControlPlaneEnv = makeControlPlaneEnv({ runtime: "host" })

/** A user and a project whose repository is a fresh local git repo. */
export const seedProject = (repoUrl?: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const userId = makeId("user")
    const projectId = makeId("proj")
    const repo = repoUrl ?? makeRepo(join(yield* Effect.promise(() => tempDir("sam-repo-")), "repo"))
    yield* sql`INSERT INTO users (id, display_name) VALUES (${userId}, 'Test Owner')`
    yield* sql`INSERT INTO projects (id, owner_id, name, repo_url) VALUES (${projectId}, ${userId}, 'demo', ${repo})`
    yield* sql`INSERT INTO project_members (project_id, user_id, role) VALUES (${projectId}, ${userId}, 'owner')`
    return { userId, projectId, repo }
  })

/**
 * Settings the in-process control plane reads from the environment, set for this test file and
 * restored after it (the files after it run in the same process).
 */
export const useSettings = (settings: Readonly<Record<string, string>>) => {
  const saved = Object.fromEntries(Object.keys(settings).map((k) => [k, process.env[k]]))
  Object.assign(process.env, settings)
  afterAll(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  })
}

/** Submit a task for the demo agent straight to the task actor, with an agent profile if given; its id. */
export const submitTask = (
  projectId: string,
  userId: string,
  prompt: string,
  mode: "task" | "conversation" = "task",
  profileId?: string
) =>
  Effect.gen(function* () {
    const taskId = makeId("task")
    if (profileId !== undefined) {
      const sql = yield* SqlClient.SqlClient
      yield* sql`INSERT INTO task_agent_profiles (task_id, profile_id) VALUES (${taskId}, ${profileId})`
    }
    yield* Actors.ask(
      ControlPlane.TaskRef,
      taskId,
      Domain.ControlProtocol.TaskSubmit.make({
        taskId,
        projectId: projectId as never,
        userId: userId as never,
        prompt,
        agent: "demo",
        mode
      })
    )
    return taskId
  })

const TERMINAL = ["completed", "failed", "cancelled"]

/** The tasks' rows once every one of them has ended. */
export const tasksEnded = (taskIds: ReadonlyArray<string>, timeout: `${number} seconds`) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* waitUntil(
      `${taskIds.length} tasks to end`,
      Effect.map(
        sql<{
          id: string
          status: string
          sessionId: string
          workspaceId: string
          commitSha: string | null
          errorReason: string | null
        }>`
          SELECT id, status, session_id, workspace_id, commit_sha, error_reason FROM tasks WHERE id IN ${sql.in(taskIds)}`,
        (rows) => (rows.length === taskIds.length && rows.every((r) => TERMINAL.includes(r.status)) ? rows : undefined)
      ),
      { timeout, every: "200 millis" }
    ).pipe(
      // What each task that did not end was doing, with its workspace, session and node: the evidence a
      // timeout needs to be understood.
      Effect.tapError(() =>
        sql<Record<string, unknown>>`
          SELECT t.id, t.status, t.execution_step, t.node_id, t.updated_at, w.id AS workspace, w.status AS workspace_status,
            w.dispatched_at, s.id AS session, s.status AS session_status, s.last_seq, n.status AS node_status,
            n.last_heartbeat_at
          FROM tasks t LEFT JOIN workspaces w ON w.id = t.workspace_id LEFT JOIN sessions s ON s.id = t.session_id
            LEFT JOIN nodes n ON n.id = t.node_id
          WHERE t.id IN ${sql.in(taskIds)} AND t.status NOT IN ${sql.in(TERMINAL)}`.pipe(
          Effect.tap((rows) => Effect.sync(() => console.log(`tasks not ended: ${JSON.stringify(rows, null, 1)}`))),
          Effect.tap((rows) =>
            Effect.forEach(rows, (row) =>
              Effect.gen(function* () {
                const events = yield* sql`
                  SELECT seq, type, prompt_epoch, at FROM session_events WHERE session_id = ${String(row.session)} ORDER BY seq`
                const inbox = yield* sql`
                  SELECT kind, entity_id, type, processed_at FROM actor_inbox
                  WHERE entity_id IN (${String(row.session)}, ${String(row.id)}, ${String(row.workspace)}) ORDER BY processed_at`
                console.log(`task ${row.id}: events ${JSON.stringify(events)}\ninbox ${JSON.stringify(inbox)}`)
              })
            )
          ),
          Effect.ignore
        )
      )
    )
  })
