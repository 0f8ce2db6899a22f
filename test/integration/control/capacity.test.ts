import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Actors, ControlPlane } from "@sam/actors"
import { Domain } from "@sam/bus"
import { Effect, Fiber, Ref } from "effect"
import { expect } from "vitest"
import { ControlPlaneEnv, seedProject, submitTask, tasksEnded, useSettings } from "../../src/ControlPlaneHarness.js"
import { waitUntil } from "../../src/Env.js"

const { ControlProtocol: C } = Domain

// Small caps (ADR 0022), read by the in-process control plane; restored for the files after this one.
useSettings({
  SAM_MAX_NODES_PER_USER: "2",
  SAM_MAX_NODES: "3",
  SAM_NODE_MAX_WORKSPACES: "2",
  SAM_TASK_CAPACITY_RETRY_MS: "300",
  // A finished task's workspace holds its slot until it is stopped as idle (ADR 0023): soon, here.
  SAM_WORKSPACE_IDLE_MS: "1500"
})

const submitBurst = (projectId: string, userId: string, count: number) =>
  Effect.forEach(
    Array.from({ length: count }, (_, i) => i),
    (i) => submitTask(projectId, userId, `say task ${i} of a burst`),
    { concurrency: "unbounded" }
  )

interface Sample {
  /** the most live workspaces of unfinished tasks seen on one node (the ledger) */
  readonly ledger: number
  /** the most reservations seen on one node */
  readonly reserved: number
  /** the most nodes seen per user, and in all */
  readonly perUser: Record<string, number>
  readonly total: number
  /** tasks seen waiting for node capacity */
  readonly waiting: ReadonlySet<string>
}

/** Sample the ledger every 50 ms while the bursts run, keeping the worst seen. */
const sampling = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const worst = yield* Ref.make<Sample>({ ledger: 0, reserved: 0, perUser: {}, total: 0, waiting: new Set() })
  const once = Effect.gen(function* () {
    const live = yield* sql<{ n: number }>`
      SELECT w.node_id, count(*)::int AS n FROM workspaces w JOIN tasks t ON t.workspace_id = w.id
      WHERE w.status IN ('pending', 'creating', 'running', 'recovery')
        AND t.status NOT IN ('completed', 'failed', 'cancelled')
      GROUP BY w.node_id`
    // Tolerant of a ledger without reservations, so the invariants above still say what went wrong there.
    const reserved = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM node_reservations GROUP BY node_id`.pipe(
      Effect.orElseSucceed(() => [])
    )
    const nodes = yield* sql<{ ownerId: string; n: number }>`
      SELECT owner_id, count(*)::int AS n FROM nodes WHERE status IN ('provisioning', 'running', 'warm')
      GROUP BY owner_id`
    const waiting = yield* sql<{ id: string }>`
      SELECT id FROM tasks WHERE execution_step = 'waiting_for_node_capacity' AND status = 'queued'`
    yield* Ref.update(worst, (w) => ({
      ledger: Math.max(w.ledger, ...live.map((r) => r.n)),
      reserved: Math.max(w.reserved, ...reserved.map((r) => r.n)),
      perUser: Object.fromEntries(
        [...new Set([...Object.keys(w.perUser), ...nodes.map((r) => r.ownerId)])].map((u) => [
          u,
          Math.max(w.perUser[u] ?? 0, nodes.find((r) => r.ownerId === u)?.n ?? 0)
        ])
      ),
      total: Math.max(
        w.total,
        nodes.reduce((sum, r) => sum + r.n, 0)
      ),
      waiting: new Set([...w.waiting, ...waiting.map((r) => r.id)])
    }))
  })
  const fiber = yield* Effect.fork(Effect.forever(once.pipe(Effect.zipRight(Effect.sleep("50 millis")))))
  return { worst, fiber }
})

const allEnded = tasksEnded

const waitReasons = (taskIds: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ reason: string }>`
      SELECT reason FROM task_status_events WHERE task_id IN ${sql.in(taskIds)} AND reason LIKE 'waiting for node capacity%'`
    return rows.map((r) => r.reason)
  })

layer(ControlPlaneEnv, { excludeTestServices: true, timeout: 150_000 })("node capacity (ADR 0022)", (it) => {
  it.effect(
    "a burst of 12 tasks from one user: at most 2 nodes, never more than 2 live workspaces on one, the rest wait and all finish",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const { projectId, userId } = yield* seedProject()
        const { worst, fiber } = yield* sampling
        const tasks = yield* submitBurst(projectId, userId, 12)
        const ended = yield* allEnded(tasks, "80 seconds")
        yield* Fiber.interrupt(fiber)
        expect(ended.filter((r) => r.status !== "completed")).toEqual([])

        const seen = yield* Ref.get(worst)
        expect(seen.ledger).toBeLessThanOrEqual(2)
        expect(seen.reserved).toBeLessThanOrEqual(2)
        expect(seen.perUser[userId]).toBeLessThanOrEqual(2)
        const nodes = yield* sql<{ id: string; maxWorkspaces: number }>`
          SELECT id, max_workspaces FROM nodes WHERE owner_id = ${userId}`
        expect(nodes.length).toBeGreaterThanOrEqual(1)
        expect(nodes.length).toBeLessThanOrEqual(2)
        expect(nodes.every((n) => n.maxWorkspaces === 2)).toBe(true)
        // The surplus waited, and said why.
        expect([...seen.waiting].filter((id) => (tasks as ReadonlyArray<string>).includes(id)).length).toBeGreaterThan(
          0
        )
        expect((yield* waitReasons(tasks)).length).toBeGreaterThan(0)
        // Every slot is given back (the last release follows its workspace's idle stop).
        yield* waitUntil(
          "every slot given back",
          Effect.map(sql`SELECT workspace_id FROM node_reservations`, (rows) => (rows.length === 0 ? true : undefined)),
          { timeout: "10 seconds", every: "100 millis" }
        )
      })
  )

  it.effect(
    "two more users' bursts: each held to its own cap and all of them to the installation's; a user waits for the installation's cap until a node goes",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        // The first test's user holds 2 of the installation's 3 nodes.
        const before = yield* sql<{ id: string; ownerId: string }>`
          SELECT id, owner_id FROM nodes WHERE status IN ('provisioning', 'running', 'warm')`
        expect(before.length).toBe(2)
        const bob = yield* seedProject()
        const { worst, fiber } = yield* sampling
        const bobTasks = yield* submitBurst(bob.projectId, bob.userId, 6)
        const bobEnded = yield* allEnded(bobTasks, "60 seconds")
        expect(bobEnded.filter((r) => r.status !== "completed")).toEqual([])
        // Bob's cap is 2, but the installation had room for one more node only.
        const bobNodes = yield* sql<{ id: string }>`SELECT id FROM nodes WHERE owner_id = ${bob.userId}`
        expect(bobNodes.length).toBe(1)

        // Carol finds the installation full: her tasks wait, saying so, and start nothing.
        const carol = yield* seedProject()
        const carolTasks = yield* submitBurst(carol.projectId, carol.userId, 2)
        const reasons = yield* waitUntil(
          "carol's tasks to wait for node capacity",
          Effect.map(waitReasons(carolTasks), (r) => (r.length === 2 ? r : undefined)),
          { timeout: "15 seconds", every: "100 millis" }
        )
        expect(reasons[0]).toContain("the installation's node cap is reached (3 nodes)")
        expect(yield* sql`SELECT id FROM nodes WHERE owner_id = ${carol.userId}`).toEqual([])

        // A node goes: Carol's tasks get one of their own and finish.
        const retired = before[0]!.id
        const destroyed = yield* Actors.ask(
          ControlPlane.NodeRef,
          retired,
          C.NodeDestroy.make({ nodeId: retired as never, reason: "capacity test" })
        )
        expect(destroyed).toMatchObject({ outcome: "applied", reply: { ok: true } })
        const carolEnded = yield* allEnded(carolTasks, "40 seconds")
        expect(carolEnded.filter((r) => r.status !== "completed")).toEqual([])
        yield* Fiber.interrupt(fiber)

        const seen = yield* Ref.get(worst)
        expect(seen.ledger).toBeLessThanOrEqual(2)
        expect(seen.reserved).toBeLessThanOrEqual(2)
        expect(seen.total).toBeLessThanOrEqual(3)
        expect(seen.perUser[bob.userId]).toBe(1)
        expect(seen.perUser[carol.userId]).toBe(1)
      })
  )
})
