import { describe, expect, it } from "vitest"
import { Domain, encode, makeId } from "../src/index.js"

const { NodeProtocol } = Domain

describe("node protocol", () => {
  it("round-trips a workspace create with defaults filled in", () => {
    const create = NodeProtocol.WorkspaceCreate.make({
      workspaceId: makeId("ws"),
      projectId: makeId("proj"),
      repoUrl: "file:///srv/repo.git",
      env: [{ name: "API_KEY", value: "s3cret", secret: true }],
      files: [{ path: ".config/app.json", content: "{}" }]
    })
    const decoded = NodeProtocol.nodeCommands.decode(encode(create))
    expect(decoded._tag).toBe("Ok")
    if (decoded._tag === "Ok") expect(decoded.envelope.body).toMatchObject({ runtime: "auto", env: [{ secret: true }] })
  })

  it.each([
    ["a path that climbs out of the workspace", { path: "../../etc/passwd", content: "x" }],
    ["an absolute-looking climb", { path: "a/../../b", content: "x" }]
  ])("refuses %s", (_, file) => {
    expect(() =>
      NodeProtocol.WorkspaceCreate.make({
        workspaceId: makeId("ws"),
        projectId: makeId("proj"),
        repoUrl: "file:///r",
        files: [file]
      })
    ).toThrow(/no \.\./)
  })

  it("refuses an env var name that a shell would misread, and an id of the wrong kind", () => {
    const base = { workspaceId: makeId("ws"), projectId: makeId("proj"), repoUrl: "/r" }
    expect(() => NodeProtocol.WorkspaceCreate.make({ ...base, env: [{ name: "A=B; rm -rf /", value: "" }] })).toThrow()
    expect(() => NodeProtocol.WorkspaceCreate.make({ ...base, workspaceId: makeId("task") as never })).toThrow()
  })

  it("keeps reports and commands apart: a command is not a valid report", () => {
    const cancel = NodeProtocol.SessionCancel.make({ sessionId: makeId("sess") })
    const decoded = NodeProtocol.agentReports.decode(encode(cancel))
    expect(decoded._tag === "Malformed" && decoded.malformed.reason).toBe("unknown-type")
  })

  it("carries session events of the known kinds, bounded in size", () => {
    const sessionId = makeId("sess")
    const event = (e: Record<string, unknown>) => () =>
      NodeProtocol.SessionEvent.make({ sessionId, nodeSeq: 1, promptEpoch: 1, event: e as never })
    expect(event({ type: "text", text: "hi" })).not.toThrow()
    expect(event({ type: "tool-call", toolCallId: "t1", title: "ls", content: [] })).not.toThrow()
    expect(event({ type: "dance" })).toThrow()
    expect(event({ type: "text", text: "x".repeat(300_000) })).toThrow(/256 kB/)
  })
})
