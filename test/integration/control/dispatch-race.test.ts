import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Actor, ActorRuntime, Actors, ControlPlane } from "@sam/actors"
import { Consume, Domain, makeId, Nats, Publish } from "@sam/bus"
import { Migrations } from "@sam/sql"
import { Chunk, Effect, Layer, Stream } from "effect"
import { expect } from "vitest"
import { freshDatabase, sqlLayer, unique, waitUntil } from "../../src/Env.js"
import { startPrivateNats } from "../../src/PrivateNats.js"

const { ControlProtocol: C, NodeProtocol: N } = Domain

/** Only the workspace kind runs: the test plays both dispatch paths and the node. */
const Env = Layer.unwrapScoped(
  Effect.gen(function* () {
    const nats = yield* startPrivateNats
    const sql = sqlLayer(yield* Effect.promise(freshDatabase))
    yield* Migrations.migrate().pipe(Effect.provide(sql))
    const base = Layer.merge(nats.layer, sql)
    const runtime = ActorRuntime.layer([ControlPlane.WorkspaceKind], { leaseTtl: "3 seconds", pollEvery: "50 millis" })
    return Layer.merge(base, runtime.pipe(Layer.provide(base)))
  })
)

layer(Env, { excludeTestServices: true, timeout: 60_000 })("workspace dispatch", (it) => {
  it.effect(
    "the node-ready path and the task path racing for the same workspace create it exactly once, every time",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const userId = makeId("user")
        const projectId = makeId("proj")
        const nodeId = makeId("node")
        yield* sql`INSERT INTO users (id, display_name) VALUES (${userId}, 'u')`
        yield* sql`INSERT INTO projects (id, owner_id, name, repo_url) VALUES (${projectId}, ${userId}, 'p', '/r')`
        yield* sql`INSERT INTO nodes (id, provider, status) VALUES (${nodeId}, 'local', 'running')`
        const workspaces = Array.from({ length: 40 }, () => makeId("ws"))
        for (const id of workspaces) {
          yield* sql`INSERT INTO workspaces (id, project_id, node_id, status) VALUES (${id}, ${projectId}, ${nodeId}, 'pending')`
        }
        const durable = unique("node-cmds-")
        yield* Consume.ensureConsumer("SAM_NODE", { durable, filterSubject: `sam.node.${nodeId}.cmd.>` })

        // Both paths, three times each, all at once, interleaved.
        const dispatches = workspaces.flatMap((workspaceId) =>
          (["task", "node-ready", "task", "node-ready", "node-ready", "task"] as const).map((via) =>
            Publish.publish(
              Actor.subjectOf(ControlPlane.WorkspaceRef, workspaceId),
              C.WorkspaceDispatch.make({ workspaceId, via })
            )
          )
        )
        yield* Effect.all(dispatches, { concurrency: 32, discard: true })

        const creates = yield* waitUntil(
          "every workspace dispatched",
          sql<{
            n: number
          }>`SELECT count(*)::int AS n FROM workspaces WHERE node_id = ${nodeId} AND dispatched_at IS NOT NULL`.pipe(
            Effect.map((rows) => (rows[0]?.n === workspaces.length ? rows[0] : undefined))
          ),
          { timeout: "30 seconds" }
        )
        expect(creates.n).toBe(workspaces.length)
        const counts = yield* sql<{
          dispatchCount: number
        }>`SELECT dispatch_count FROM workspaces WHERE node_id = ${nodeId}`
        expect(counts.every((c) => c.dispatchCount === 1)).toBe(true)

        // Everything the commits sent has been published; the node got exactly one create per workspace.
        yield* waitUntil(
          "the outbox relayed",
          sql<{ n: number }>`SELECT count(*)::int AS n FROM actor_outbox WHERE sent_at IS NULL`.pipe(
            Effect.map((rows) => (rows[0]?.n === 0 ? true : undefined))
          )
        )
        const received = yield* Consume.consume("SAM_NODE", durable, N.nodeCommands).pipe(
          Stream.tap((d) => Consume.settle(d, Consume.Outcome.Ack())),
          Stream.take(workspaces.length),
          Stream.runCollect
        )
        const ids = Chunk.toArray(received).map((d) => (d.envelope.body as { workspaceId: string }).workspaceId)
        expect(new Set(ids).size).toBe(workspaces.length)
        const { jsm } = yield* Nats
        const info = yield* Effect.promise(() => jsm.consumers.info("SAM_NODE", durable))
        expect(info.num_pending).toBe(0)
        expect(info.delivered.stream_seq).toBeGreaterThan(0)
      })
  )

  it.effect("a report from node A that names node B's workspace changes nothing", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const userId = makeId("user")
      const projectId = makeId("proj")
      const [nodeA, nodeB] = [makeId("node"), makeId("node")]
      const workspaceId = makeId("ws")
      yield* sql`INSERT INTO users (id, display_name) VALUES (${userId}, 'u')`
      yield* sql`INSERT INTO projects (id, owner_id, name, repo_url) VALUES (${projectId}, ${userId}, 'p', '/r')`
      yield* sql`INSERT INTO nodes (id, provider, status) VALUES (${nodeA}, 'local', 'running'), (${nodeB}, 'local', 'running')`
      yield* sql`INSERT INTO workspaces (id, project_id, node_id, status) VALUES (${workspaceId}, ${projectId}, ${nodeB}, 'creating')`
      const { nc } = yield* Nats
      const audit = nc.subscribe(`sam.evt.system.node.${nodeA}.report.dropped`, { max: 1 })
      yield* Actors.ask(
        ControlPlane.WorkspaceRef,
        workspaceId,
        C.WorkspaceReport.make({
          nodeId: nodeA,
          report: { type: "workspace.status-reported", body: { workspaceId, status: "error", reason: "forged" } }
        })
      )
      const rows = yield* sql<{ status: string; errorReason: string | null }>`
        SELECT status, error_reason FROM workspaces WHERE id = ${workspaceId}`
      expect(rows[0]).toEqual({ status: "creating", errorReason: null })
      const dropped = yield* Effect.promise(async () => {
        for await (const msg of audit) return JSON.parse(new TextDecoder().decode(msg.data))
      })
      expect(dropped.body).toMatchObject({ nodeId: nodeA, kind: "workspace", entityId: workspaceId })
    })
  )
})
