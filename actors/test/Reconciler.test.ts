import { makeId } from "@sam/bus"
import { describe, expect, it } from "vitest"
import { reconcile } from "../src/domain/Reconciler.js"

const nodeId = makeId("node")

/** A workspace the ledger has had `stopping` on the node for longer than the settle time. */
const stopping = () => ({ id: makeId("ws"), nodeId, status: "stopping" as const, dispatched: true, settled: true })

const reconciled = (
  row: ReturnType<typeof stopping>,
  held: ReadonlyArray<{ readonly workspaceId: string; readonly status: string }>
) => reconcile(nodeId, { workspaces: held as never, agentSessions: [] }, { workspaces: [row], sessions: [] })

const types = (found: ReturnType<typeof reconcile>) => found.send.map((s) => [s.subject, s.envelope.type])

describe("the reconciler and a stop whose end the node never reported", () => {
  it("sends the stop again to a node that still runs the workspace", () => {
    const row = stopping()
    const found = reconciled(row, [{ workspaceId: row.id, status: "running" }])
    expect(types(found)).toEqual([[`sam.node.${nodeId}.cmd.workspace.stop`, "workspace.stop"]])
    expect(found.lines.join("\n")).toContain("stopping in the ledger, running on the node")
  })

  it("ends it stopped when the node holds it stopped, and deleted when the node has nothing of it", () => {
    const held = stopping()
    const gone = stopping()
    for (const [row, inventory, expected] of [
      [held, [{ workspaceId: held.id, status: "stopped" }], "stopped"],
      [gone, [], "nothing"]
    ] as const) {
      const found = reconciled(row, inventory)
      expect(found.send).toHaveLength(1)
      expect(found.send[0]!.envelope).toMatchObject({
        type: "workspace.missing",
        body: { workspaceId: row.id, nodeId, found: expected }
      })
    }
  })

  it("waits while the node still creates it (the stop runs once the create ends), instead of calling it stopped", () => {
    const row = stopping()
    expect(reconciled(row, [{ workspaceId: row.id, status: "creating" }]).send).toEqual([])
  })

  it("leaves a stop alone while it may still be on its way (not settled)", () => {
    const row = { ...stopping(), settled: false }
    expect(reconciled(row, [{ workspaceId: row.id, status: "running" }]).send).toEqual([])
    expect(reconciled(row, []).send).toEqual([])
  })
})

describe("the reconciler and a node that lists only some of its workspaces", () => {
  const running = () => ({ id: makeId("ws"), nodeId, status: "running" as const, dispatched: true, settled: true })
  const truncated = (rows: ReadonlyArray<ReturnType<typeof stopping> | ReturnType<typeof running>>) =>
    reconcile(nodeId, { workspaces: [], truncated: true, agentSessions: [] }, { workspaces: rows, sessions: [] })

  it("concludes nothing from a workspace the list leaves out: it may be on the node", () => {
    expect(truncated([running(), stopping()]).send).toEqual([])
  })

  it("still finds them gone when the list is whole", () => {
    const found = reconcile(
      nodeId,
      { workspaces: [], agentSessions: [] },
      { workspaces: [running(), stopping()], sessions: [] }
    )
    expect(found.send.map((s) => s.envelope.type)).toEqual(["workspace.missing", "workspace.missing"])
  })

  it("still acts on what the list holds", () => {
    const row = stopping()
    const found = reconcile(
      nodeId,
      { workspaces: [{ workspaceId: row.id as never, status: "running" }], truncated: true, agentSessions: [] },
      { workspaces: [row], sessions: [] }
    )
    expect(types(found)).toEqual([[`sam.node.${nodeId}.cmd.workspace.stop`, "workspace.stop"]])
  })
})
