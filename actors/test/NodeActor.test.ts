import { Domain, makeId } from "@sam/bus"
import { Effect } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { NodeKind } from "../src/domain/NodeActor.js"

const { ControlProtocol: C } = Domain

const owner = makeId("user")
const nodeId = makeId("node")

const node = (
  reservations: ReadonlyArray<string>,
  fleet: { own: number; all: number; roomy: boolean } | null = null
) => ({
  row: {
    id: nodeId,
    ownerId: owner,
    maxWorkspaces: 2,
    status: "running",
    provider: "local",
    providerRequestId: "msg_x",
    agentReadyAt: new Date(),
    lastHeartbeatAt: new Date(),
    capabilities: {}
  },
  undispatched: [],
  waiting: [],
  workspaces: [],
  reservations,
  idleReserved: [],
  reclaimable: [],
  capacityWaiters: [],
  fleet
})

const reserve = (over: Partial<{ ownerId: string; create: boolean }> = {}) =>
  C.NodeReserve.make({
    nodeId,
    taskId: makeId("task"),
    workspaceId: makeId("ws"),
    projectId: makeId("proj"),
    ownerId: (over.ownerId ?? owner) as never,
    create: over.create ?? false,
    attempt: 3
  })

type Out = {
  state: { row: { ownerId: string; maxWorkspaces: number } | null; reserved?: unknown; created?: true }
  send?: Array<{
    envelope: { type: string; body: { reason?: string; ready?: boolean; attempt?: number; elsewhere?: boolean } }
  }>
  events?: Array<{ envelope: { type: string } }>
}
const handle = (state: unknown, command: ReturnType<typeof C.NodeReserve.make>) =>
  Effect.runPromise(
    NodeKind.handle(state, command, {
      kind: "node",
      id: nodeId,
      subject: "s",
      streamSequence: 1,
      attempt: 1
    }) as unknown as Effect.Effect<Out>
  )

const saved = { ...process.env }
afterEach(() => {
  process.env = { ...saved }
})

describe("a node's slots (ADR 0022)", () => {
  it("are granted up to max_workspaces, then refused with the reason", async () => {
    const granted = await handle(node([makeId("ws")]), reserve())
    expect(granted.send?.map((s) => [s.envelope.type, s.envelope.body.ready])).toEqual([["task.node-reserved", true]])
    expect(granted.state.reserved).toBeDefined()

    const full = await handle(node([makeId("ws"), makeId("ws")]), reserve())
    expect(full.send?.map((s) => s.envelope.type)).toEqual(["task.node-full"])
    expect(full.send?.[0]?.envelope.body).toMatchObject({
      reason: expect.stringContaining("is full (2 of 2"),
      attempt: 3
    })
    expect(full.state.reserved).toBeUndefined()
  })

  it("on a ready node full of idle work: the oldest idle slot is handed over and only that workspace stops (ADR 0038)", async () => {
    const [idleOld, busy, idleNew] = [makeId("ws"), makeId("ws"), makeId("ws")]
    const state = { ...node([idleOld, busy]), idleReserved: [idleOld, idleNew], reclaimable: [idleOld] }
    const command = reserve()
    const taken = await handle(state, command)
    expect(taken.send?.map((s) => s.envelope.type)).toEqual(["task.node-reserved", "workspace.idle-timeout"])
    expect(taken.send?.[1]?.envelope.body).toMatchObject({ workspaceId: idleOld })
    expect(taken.state).toMatchObject({ released: idleOld, reservations: [busy, command.body.workspaceId] })
    // Not ready: no hand-over; the task waits and the idle ones are asked to stop (ADR 0035).
    const stale = { ...state, row: { ...state.row, lastHeartbeatAt: new Date(0) } }
    const waits = await handle(stale, reserve())
    expect(waits.send?.map((s) => s.envelope.type)).toEqual([
      "task.node-full",
      "workspace.idle-timeout",
      "workspace.idle-timeout"
    ])
    expect(waits.state.reserved).toBeUndefined()
  })

  it("are the owner's only", async () => {
    const other = await handle(node([]), reserve({ ownerId: makeId("user") }))
    expect(other.send?.[0]?.envelope.body.reason).toContain("not the submitter's")
  })

  it("on a new node: created for its owner and provisioned within the per-user and installation caps", async () => {
    process.env.SAM_MAX_NODES_PER_USER = "2"
    process.env.SAM_MAX_NODES = "3"
    process.env.SAM_NODE_MAX_WORKSPACES = "5"
    const fresh = { ...node([], { own: 1, all: 2, roomy: false }), row: null, reservations: [] }
    const created = await handle(fresh, reserve({ create: true }))
    expect(created.state.created).toBe(true)
    expect(created.state.row).toMatchObject({ ownerId: owner, maxWorkspaces: 5 })
    expect(created.events?.map((e) => e.envelope.type)).toEqual(["node.provision-requested"])
    expect(created.send?.map((s) => [s.envelope.type, s.envelope.body.ready])).toEqual([["task.node-reserved", false]])

    const mine = await handle({ ...fresh, fleet: { own: 2, all: 2, roomy: false } }, reserve({ create: true }))
    expect(mine.send?.[0]?.envelope.body.reason).toContain("the user's node cap is reached (2 nodes)")
    const everyone = await handle({ ...fresh, fleet: { own: 0, all: 3, roomy: false } }, reserve({ create: true }))
    expect(everyone.send?.[0]?.envelope.body.reason).toContain("the installation's node cap is reached (3 nodes)")
    expect(everyone.state.row).toBeNull()
    // Another task of the owner's created a node with room a moment ago: place there, no second node.
    const roomy = await handle({ ...fresh, fleet: { own: 1, all: 1, roomy: true } }, reserve({ create: true }))
    expect(roomy.state.row).toBeNull()
    expect(roomy.send?.[0]?.envelope.body).toMatchObject({ elsewhere: true })
  })
})

describe("idle reclaim of a joined machine (ADR 0027)", () => {
  const idle = C.NodeIdleCheck.make({ nodeId: nodeId as never }) as unknown as ReturnType<typeof C.NodeReserve.make>
  const at = (provider: string, status: string) => ({
    ...node([]),
    row: { ...node([]).row, provider, status },
    warmPeers: 1
  })

  it("leaves a joined node alone however long it idles, provisioning or running; a local node is retired", async () => {
    process.env.SAM_WARM_NODES = "1"
    for (const status of ["running", "provisioning"]) {
      const joined = await handle(at("joined", status), idle)
      expect(joined.events ?? []).toEqual([])
      expect(joined.send ?? []).toEqual([])
      expect(joined.state.row).toMatchObject({ status, provider: "joined" })
    }
    // The same idle check on a node SAM made, with its owner's warm pool full: destroyed.
    for (const status of ["running", "provisioning"]) {
      const local = await handle(at("local", status), idle)
      expect(local.events?.map((e) => e.envelope.type)).toContain("node.destroy-requested")
    }
  })
})

describe("a node destroyed before it reported its workspaces' ends", () => {
  it("tells every workspace still there that nothing of it is left, a stopped one too", async () => {
    const workspaces = (["running", "stopping", "stopped", "error"] as const).map((status) => ({
      id: makeId("ws"),
      status
    }))
    const destroying = { ...node([]), row: { ...node([]).row, status: "destroying" }, workspaces }
    const destroyed = C.NodeDestroyed.make({
      nodeId: nodeId as never,
      detail: "machine destroyed"
    }) as unknown as ReturnType<typeof C.NodeReserve.make>
    const out = await handle(destroying, destroyed)
    expect(out.state.row).toMatchObject({ status: "deleted" })
    expect(
      (out.send ?? []).map((s) => [s.envelope.type, (s.envelope.body as unknown as { found?: string }).found])
    ).toEqual(workspaces.map(() => ["workspace.missing", "nothing"]))
  })
})
