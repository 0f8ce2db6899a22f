import { Domain, makeId } from "@sam/bus"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { WorkspaceKind } from "../src/domain/WorkspaceActor.js"

const { ControlProtocol: C } = Domain

const nodeId = makeId("node")
const asleep = makeId("sess")
const working = makeId("sess")

/** A workspace on the node with one sleeping session (its task completed) and one active one. */
const workspace = (status: Domain.WorkspaceStatus) => ({
  id: makeId("ws"),
  projectId: makeId("proj"),
  nodeId,
  taskId: makeId("task"),
  status,
  runtime: "host",
  dispatchedAt: new Date(),
  dispatchCount: 1,
  errorReason: null,
  repoUrl: "file:///tmp/r",
  branch: "main",
  taskStatus: "completed",
  liveSessions: [asleep, working],
  activeSessions: [working],
  bootLog: []
})

type Out = {
  state: { status: string } | null
  send?: Array<{ envelope: { type: string; body: { sessionId?: string; from?: string; keepsFiles?: boolean } } }>
}
const handle = (state: ReturnType<typeof workspace>, command: { readonly type: string }) =>
  Effect.runPromise(
    WorkspaceKind.handle(state as never, command as never, {
      kind: "workspace",
      id: state.id,
      subject: "s",
      streamSequence: 1,
      attempt: 1
    }) as unknown as Effect.Effect<Out>
  )

/** The sessions told to stop, and whether the workspace keeps their files. */
const stops = (out: Out) =>
  (out.send ?? [])
    .filter((s) => s.envelope.type === "session.user-stop")
    .map((s) => [s.envelope.body.sessionId, s.envelope.body.keepsFiles ?? false])

/** Its node destroyed before it reported the workspace's end: nothing of it is left there. */
const nodeGone = (state: ReturnType<typeof workspace>) =>
  handle(
    state,
    C.WorkspaceMissing.make({
      workspaceId: state.id,
      nodeId,
      reason: `its node ${nodeId} was deleted`,
      found: "nothing"
    })
  )

describe("a workspace's end and its sessions (ADR 0023)", () => {
  it("a stop ends its active sessions keeping their files, and leaves a sleeping one asleep; a delete ends both", async () => {
    const stop = await handle(workspace("running"), C.WorkspaceStopCommand.make({ workspaceId: makeId("ws") }))
    expect(stop.state?.status).toBe("stopping")
    expect(stops(stop)).toEqual([[working, true]])
    const del = await handle(workspace("running"), C.WorkspaceDeleteCommand.make({ workspaceId: makeId("ws") }))
    expect(stops(del)).toEqual([
      [asleep, false],
      [working, false]
    ])
  })

  it("a stopping workspace its node no longer has ends deleted, and nothing stays asleep in it", async () => {
    const state = workspace("stopping")
    const gone = await nodeGone(state)
    expect(gone.state?.status).toBe("deleted")
    expect(stops(gone)).toEqual([
      [asleep, false],
      [working, false]
    ])
    const held = await handle(
      state,
      C.WorkspaceMissing.make({ workspaceId: state.id, nodeId, reason: "held stopped", found: "stopped" })
    )
    expect(held.state?.status).toBe("stopped")
    expect(stops(held)).toEqual([[working, true]])
  })

  it("a stopped workspace whose node is gone is deleted, and its sleeping session ends", async () => {
    const state = { ...workspace("stopped"), activeSessions: [], liveSessions: [asleep] }
    const gone = await nodeGone(state)
    expect(gone.state?.status).toBe("deleted")
    expect(stops(gone)).toEqual([[asleep, false]])
  })
})

describe("a node's report of a create (ADR 0023)", () => {
  const report = (state: ReturnType<typeof workspace>, status: "creating" | "running" | "stopped") =>
    handle(
      state,
      C.WorkspaceReport.make({
        nodeId,
        report: { type: "workspace.status-reported", body: { workspaceId: state.id, status, runtime: "host" } }
      })
    )

  it("a create delivered again after the workspace ended does not bring it back to creating", async () => {
    for (const status of ["stopped", "error"] as const) {
      const state = { ...workspace(status), activeSessions: [], liveSessions: [] }
      const creating = await report(state, "creating")
      expect(creating.state?.status).toBe(status)
      expect(creating.send ?? []).toEqual([])
    }
  })

  it("a node that makes a running workspace again is followed: creating, then running", async () => {
    const remade = await report(workspace("running"), "creating")
    expect(remade.state?.status).toBe("creating")
  })
})

describe("an ended workspace's retention (ADR 0052)", () => {
  type Timed = { timers?: Array<{ _tag: string; name: string; command?: { type: string } }> }
  it("one that ends (stopped, failed) gets the timer that deletes it", async () => {
    const state = workspace("stopping")
    const out = (await handle(
      state,
      C.WorkspaceReport.make({
        nodeId,
        report: {
          type: "workspace.status-reported",
          body: { workspaceId: state.id, status: "stopped", runtime: "host" }
        }
      })
    )) as Out & Timed
    expect(out.state?.status).toBe("stopped")
    expect(out.timers?.map((t) => [t._tag, t.name, t.command?.type])).toEqual([
      ["Set", "ended", "workspace.ended-expiry"]
    ])
  })

  it("a delete the node refuses of one that ended is tried again at the next expiry", async () => {
    const state = { ...workspace("stopped"), activeSessions: [], liveSessions: [] }
    const refused = (await handle(
      state,
      C.WorkspaceCommandRejected.make({
        workspaceId: state.id as never,
        nodeId,
        messageId: makeId("msg"),
        commandType: "workspace.delete",
        code: "unavailable",
        message: "gave up after 5 deliveries: io"
      })
    )) as Out & Timed
    expect(refused.state?.status).toBe("stopped")
    expect(refused.timers?.map((t) => [t._tag, t.name, t.command?.type])).toEqual([
      ["Set", "ended", "workspace.ended-expiry"]
    ])
  })

  it("at its expiry a stopped one is deleted on its node and its sleeping session ends; a failed one too; one running again is left alone", async () => {
    const expiry = (state: ReturnType<typeof workspace>) =>
      handle(state, C.WorkspaceEndedExpiry.make({ workspaceId: state.id as never }))
    const stopped = await expiry({ ...workspace("stopped"), activeSessions: [], liveSessions: [asleep] })
    expect((stopped.send ?? []).map((s) => s.envelope.type)).toEqual(["workspace.delete", "session.user-stop"])
    expect(stops(stopped)).toEqual([[asleep, false]])
    const failed = await expiry({ ...workspace("error"), activeSessions: [], liveSessions: [] })
    // its status is the node's to change: a node that never answers leaves it failed, not stopping for ever
    expect(failed.state?.status).toBe("error")
    expect((failed.send ?? []).map((s) => s.envelope.type)).toEqual(["workspace.stop", "workspace.delete"])
    const running = await expiry(workspace("running"))
    expect(running.state?.status).toBe("running")
    expect(running.send ?? []).toEqual([])
  })
})
