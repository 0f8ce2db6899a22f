import { execFileSync } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { Actors, ControlPlane } from "@sam/actors"
import { Domain, type Envelope, Kv, makeId, Nats, Publish, Subjects, Topology } from "@sam/bus"
import { Effect, Fiber, Ref } from "effect"
import { expect } from "vitest"
import {
  ControlPlaneEnv,
  LocalNodes,
  seedProject,
  submitTask,
  tasksEnded,
  useSettings
} from "../../src/ControlPlaneHarness.js"
import { waitUntil } from "../../src/Env.js"
import { isDemoAgent, isVmAgent, processes, processTree } from "../../src/ProcessTree.js"

const { ControlProtocol: C, NodeProtocol: N } = Domain

/**
 * Idle reclaim (ADR 0023) on the whole control plane with real vm-agents and demo agents: completed
 * work sleeps, idle workspaces stop, idle nodes go back to the warm pool, and the reconciler finds
 * what has no live owner. Short timeouts here; the defaults are minutes.
 */
useSettings({
  SAM_MAX_NODES_PER_USER: "3",
  SAM_NODE_MAX_WORKSPACES: "4",
  SAM_TASK_CAPACITY_RETRY_MS: "300",
  SAM_WORKSPACE_IDLE_MS: "1500",
  SAM_NODE_IDLE_MS: "2500",
  SAM_WARM_NODES: "1",
  SAM_RECONCILE_SETTLE_MS: "1000",
  SAM_RECONCILE_INTERVAL_MS: "2000"
})

const LIVE_WORKSPACE = ["pending", "creating", "running", "recovery", "stopping"]

/** This run's vm-agents (their credentials are under its nodes directory) and what runs under them. */
const nodeProcesses = (nodesDir: string) => {
  const all = processes()
  const vmAgents = all.filter((p) => isVmAgent(p.cmdline) && isOurs(p.pid, nodesDir))
  const tree = vmAgents.flatMap((p) => processTree(p.pid))
  const agents = all.filter((p) => isDemoAgent(p.cmdline) && p.cwd.startsWith(nodesDir))
  return {
    vmAgents: vmAgents.length,
    agents: agents.length,
    rssMiB: Math.round(tree.reduce((sum, p) => sum + p.rssKiB, 0) / 1024)
  }
}
const isOurs = (pid: number, nodesDir: string) => {
  try {
    return readFileSync(`/proc/${pid}/environ`, "utf8").includes(`SAM_NATS_CREDS=${nodesDir}/`)
  } catch {
    return false
  }
}

const submit = submitTask
const allEnded = tasksEnded

/** Back to the warm pool: no agent process, no live workspace, one live node (warm) with its vm-agent. */
const reclaimed = (userId: string, nodesDir: string, timeout: `${number} seconds`) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    let last: unknown
    return yield* waitUntil(
      "agent processes, workspaces and nodes back to the warm pool",
      Effect.gen(function* () {
        const workspaces = yield* sql<{ n: number }>`
          SELECT count(*)::int AS n FROM workspaces WHERE status IN ${sql.in(LIVE_WORKSPACE)}`
        const nodes = yield* sql<{ id: string; status: string }>`
          SELECT id, status FROM nodes WHERE owner_id = ${userId} AND status IN ('provisioning', 'running', 'warm', 'destroying')`
        const procs = nodeProcesses(nodesDir)
        last = { workspaces: workspaces[0]!.n, nodes, ...procs }
        const done =
          workspaces[0]!.n === 0 &&
          nodes.length === 1 &&
          nodes[0]!.status === "warm" &&
          procs.agents === 0 &&
          procs.vmAgents === 1
        return done ? { node: nodes[0]!.id, ...procs } : undefined
      }),
      { timeout, every: "250 millis" }
    ).pipe(Effect.tapError(() => Effect.sync(() => console.log(`reclaim: last seen ${JSON.stringify(last)}`))))
  })

layer(ControlPlaneEnv, { excludeTestServices: true, timeout: 240_000 })("idle reclaim (ADR 0023)", (it) => {
  it.effect(
    "20 tasks at once complete: sessions sleep, then agent processes, workspaces and nodes go back to the warm pool, and the memory with them",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const { dir: nodesDir } = yield* LocalNodes
        const { projectId, userId } = yield* seedProject()

        // The warm pool first: a few tasks, then their node idles into the pool. That is the baseline (a
        // process's heap grows with its first work and is not given back to the system: not a leak).
        const warmups = yield* Effect.forEach([1, 2, 3, 4], (i) => submit(projectId, userId, `say warm up ${i}`))
        const warmed = yield* allEnded(warmups, "60 seconds")
        expect(warmed.filter((r) => r.status !== "completed")).toEqual([])
        const before = yield* reclaimed(userId, nodesDir, "30 seconds")

        // The burst, sampled every 50 ms for the caps and the peak.
        const peak = yield* Ref.make({ perNode: 0, reserved: 0, nodes: 0, agents: 0, rssMiB: 0 })
        const sample = Effect.gen(function* () {
          // Workspaces at work for a task that has not ended: a finished task's idle workspace holds no slot,
          // and one whose slot a new task took is stopped beside it (ADR 0038).
          const perNode = yield* sql<{ n: number }>`
            SELECT count(*)::int AS n FROM workspaces w JOIN tasks t ON t.id = w.task_id
            WHERE w.status IN ${sql.in(LIVE_WORKSPACE)} AND t.status NOT IN ('completed', 'failed', 'cancelled')
            GROUP BY w.node_id`
          const reserved = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM node_reservations GROUP BY node_id`
          const [nodes] = yield* sql<{ n: number }>`
            SELECT count(*)::int AS n FROM nodes WHERE owner_id = ${userId} AND status IN ('provisioning', 'running', 'warm')`
          const procs = nodeProcesses(nodesDir)
          yield* Ref.update(peak, (p) => ({
            perNode: Math.max(p.perNode, ...perNode.map((r) => r.n)),
            reserved: Math.max(p.reserved, ...reserved.map((r) => r.n)),
            nodes: Math.max(p.nodes, nodes!.n),
            agents: Math.max(p.agents, procs.agents),
            rssMiB: Math.max(p.rssMiB, procs.rssMiB)
          }))
        })
        const sampler = yield* Effect.fork(Effect.forever(sample.pipe(Effect.zipRight(Effect.sleep("50 millis")))))
        const started = Date.now()
        const tasks = yield* Effect.forEach(
          Array.from({ length: 20 }, (_, i) => i),
          (i) => submit(projectId, userId, i % 2 === 0 ? `run echo ${i} > burst-${i}.txt` : `say task ${i}`),
          { concurrency: "unbounded" }
        )
        const ended = yield* allEnded(tasks, "150 seconds")
        const completedIn = Date.now() - started
        expect(ended.filter((r) => r.status !== "completed")).toEqual([])

        // Completed work sleeps, and takes no prompt. A node whose tasks all ended before the others' may idle out
        // of the warm pool meanwhile (SAM_NODE_IDLE_MS): its sleeping sessions end with its workspaces, stopped.
        let seen: unknown
        const settled = (r: { status: string; node: string }) =>
          r.status === "sleeping" || (r.status === "stopped" && (r.node === "destroying" || r.node === "deleted"))
        const sessions = yield* waitUntil(
          "every session asleep, or ended with its node",
          Effect.map(
            sql<{ id: string; status: string; workspace: string; node: string }>`
              SELECT s.id, s.status, w.status AS workspace, n.status AS node
              FROM sessions s JOIN workspaces w ON w.id = s.workspace_id JOIN nodes n ON n.id = w.node_id
              WHERE s.task_id IN ${sql.in(tasks)}`,
            (rows) => {
              seen = rows.filter((r) => r.status !== "sleeping")
              return rows.length === 20 && rows.every(settled) && rows.some((r) => r.status === "sleeping")
                ? rows.filter((r) => r.status === "sleeping")
                : undefined
            }
          ),
          { timeout: "20 seconds", every: "200 millis" }
        ).pipe(Effect.tapError(() => Effect.sync(() => console.log(`reclaim: not asleep ${JSON.stringify(seen)}`))))
        const answer = yield* Actors.ask(
          ControlPlane.SessionRef,
          sessions[0]!.id,
          C.SessionPromptCommand.make({ sessionId: sessions[0]!.id as never, prompt: "say are you there" })
        )
        const reply = answer.reply as { ok: boolean; code?: string; message?: string }
        expect(reply).toMatchObject({ ok: false, code: "session_sleeping" })
        expect(reply.message).toMatch(/sleeping: its task completed/)

        const reclaimStarted = Date.now()
        const after = yield* reclaimed(userId, nodesDir, "60 seconds")
        const reclaimedIn = Date.now() - reclaimStarted
        // Completed work winds down without a report the control plane has to refuse: a node sends nothing
        // about a session after its task's result (its agent's stop included).
        const refused = yield* sql<{ type: string; reason: string }>`
          SELECT d.type, d.reason FROM dropped_reports d JOIN nodes n ON n.id = d.node_id
          WHERE n.owner_id = ${userId}`
        expect(refused).toEqual([])
        yield* Fiber.interrupt(sampler)
        const worst = yield* Ref.get(peak)
        // No node over its cap, the user's node cap held, and the burst really ran side by side.
        expect(worst.perNode).toBeLessThanOrEqual(4)
        expect(worst.reserved).toBeLessThanOrEqual(4)
        expect(worst.nodes).toBeLessThanOrEqual(3)
        expect(worst.agents).toBeGreaterThan(1)
        // The nodes' processes hold what they held before the burst, within 20%.
        expect(after.rssMiB).toBeLessThanOrEqual(before.rssMiB * 1.2)
        // Sleeping sessions stay asleep in their stopped workspaces on the warm node; those on nodes that were
        // destroyed ended with their workspaces.
        const ends = yield* sql<{ status: string; warm: boolean }>`
          SELECT s.status, w.node_id = ${after.node} AS warm FROM sessions s JOIN workspaces w ON w.id = s.workspace_id
          WHERE s.task_id IN ${sql.in(tasks)}`
        for (const end of ends) expect(end.status).toBe(end.warm ? "sleeping" : "stopped")

        // A task branch outlives its workspace's processes: kept as a bundle when the workspace stopped.
        const committed = ended.find((r) => r.commitSha !== null)!
        const bundle = join(nodesDir, "..", "branches", `${committed.workspaceId}.bundle`)
        if (!existsSync(bundle)) {
          // what the workspace's node said, and what became of it, for the failure below
          const history = yield* sql<{ step: string; status: string; message: string }>`
            SELECT step, status, message FROM workspace_boot_log WHERE workspace_id = ${committed.workspaceId} ORDER BY id`
          const [row] = yield* sql<{ status: string; nodeId: string; errorReason: string | null }>`
            SELECT status, node_id, error_reason FROM workspaces WHERE id = ${committed.workspaceId}`
          console.log(`reclaim: no bundle for ${committed.workspaceId}: ${JSON.stringify({ row, history })}`)
        }
        expect(existsSync(bundle)).toBe(true)
        const heads = execFileSync("git", ["bundle", "list-heads", bundle], { encoding: "utf8" })
        expect(heads).toContain(`${committed.commitSha} refs/heads/sam/${committed.id}`)

        console.log(
          `reclaim: 20 tasks completed in ${completedIn} ms; back to the warm pool ${reclaimedIn} ms later; ` +
            `peak ${worst.agents} agent processes, ${worst.nodes} nodes, ${worst.perNode} workspaces on one node; ` +
            `nodes' memory ${before.rssMiB} MiB before, peak ${worst.rssMiB} MiB, ${after.rssMiB} MiB after`
        )
      }),
    240_000
  )

  it.effect(
    "the reconciler stops an agent whose session ended, deletes a workspace the ledger does not know, marks a row whose workspace is gone, and destroys a machine of a deleted node",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const { nc } = yield* Nats
        const { dir: nodesDir } = yield* LocalNodes
        const { projectId, userId } = yield* seedProject()
        const audit = nc.subscribe("sam.evt.system.node.*.reconciled")
        const machines = nc.subscribe("sam.evt.system.node.*.machine-reconciled")
        const findings: Array<{ kind: string; entityId: string; action: string }> = []
        void (async () => {
          for await (const m of audit) findings.push((m.json() as { body: (typeof findings)[number] }).body)
        })()
        const found = (kind: string, entityId: string, action: string) =>
          waitUntil(
            `the reconciler's ${action} of ${kind} ${entityId}`,
            Effect.sync(() =>
              findings.some((f) => f.kind === kind && f.entityId === entityId && f.action === action) ? true : undefined
            ),
            { timeout: "30 seconds", every: "100 millis" }
          )

        // A conversation waits for a follow-up with its agent alive; then the ledger says its session ended
        // (as if the stop had been lost): the agent process is an orphan.
        const taskId = yield* submit(projectId, userId, "say hello", "conversation")
        const task = yield* waitUntil(
          "the conversation to await a follow-up",
          Effect.map(
            sql<{ sessionId: string; nodeId: string; executionStep: string }>`
              SELECT session_id, node_id, execution_step FROM tasks WHERE id = ${taskId}`,
            ([row]) => (row?.executionStep === "awaiting_followup" ? row : undefined)
          ),
          { timeout: "60 seconds", every: "100 millis" }
        )
        const agentsOf = () => processes().filter((p) => isDemoAgent(p.cmdline) && p.cwd.startsWith(nodesDir)).length
        expect(agentsOf()).toBeGreaterThan(0)
        yield* sql`UPDATE sessions SET status = 'stopped', updated_at = now() - interval '1 hour' WHERE id = ${task.sessionId}`
        yield* found("agent", task.sessionId, "stopped")
        yield* waitUntil(
          "the orphan agent process to end",
          Effect.sync(() => (agentsOf() === 0 ? true : undefined)),
          { timeout: "15 seconds", every: "100 millis" }
        )

        // A workspace on the node that the ledger does not know (created behind the control plane's back).
        const stray = makeId("ws")
        const create: Envelope = N.WorkspaceCreate.make({
          workspaceId: stray as never,
          projectId: projectId as never,
          repoUrl: (yield* sql<{ repoUrl: string }>`SELECT repo_url FROM projects WHERE id = ${projectId}`)[0]!.repoUrl
        })
        yield* Publish.publish(Subjects.nodeCommand(task.nodeId, create.type), create)
        yield* found("workspace", stray, "deleted")
        const health = yield* Kv.open(Topology.Buckets.nodeHealth.name, Domain.NodeHealthRecord)
        yield* waitUntil(
          "the node to no longer hold the stray workspace",
          Effect.map(health.get(task.nodeId), (entry) =>
            entry._tag === "Some" && !(entry.value.value.workspaces ?? []).some((w) => w.workspaceId === stray)
              ? true
              : undefined
          ),
          { timeout: "20 seconds", every: "200 millis" }
        )

        // A ledger row whose workspace is gone from its node.
        const ghost = makeId("ws")
        yield* sql`
          INSERT INTO workspaces (id, project_id, node_id, status, dispatched_at, updated_at)
          VALUES (${ghost}, ${projectId}, ${task.nodeId}, 'running', now(), now() - interval '1 hour')`
        yield* found("workspace", ghost, "marked_error")
        const row = yield* waitUntil(
          "the ghost workspace marked error",
          Effect.map(
            sql<{
              status: string
              errorReason: string
            }>`SELECT status, error_reason FROM workspaces WHERE id = ${ghost}`,
            ([r]) => (r?.status === "error" ? r : undefined)
          ),
          { timeout: "10 seconds", every: "100 millis" }
        )
        expect(row.errorReason).toMatch(/no longer has it/)

        // A machine whose node the ledger has deleted: the provider destroys it.
        const machineAudit: Array<{ nodeId: string; action: string }> = []
        void (async () => {
          for await (const m of machines) machineAudit.push((m.json() as { body: (typeof machineAudit)[number] }).body)
        })()
        yield* sql`UPDATE nodes SET status = 'deleted' WHERE owner_id = ${userId}`
        yield* waitUntil(
          "the machine of the deleted node to be destroyed",
          Effect.sync(() =>
            machineAudit.some((a) => a.nodeId === task.nodeId && a.action === "destroyed") &&
            nodeProcesses(nodesDir).vmAgents === 1
              ? true
              : undefined
          ),
          { timeout: "30 seconds", every: "200 millis" }
        )
        audit.unsubscribe()
        machines.unsubscribe()
      }),
    120_000
  )
})
