import { describe, expect, it } from "vitest"
import { makeId, NodeId, Subjects } from "../src/index.js"

const { InvalidSubjectToken, shardOf } = Subjects

describe("subjects", () => {
  it("build the documented subjects", () => {
    expect(Subjects.command("task", 3, "task_abc")).toBe("sam.cmd.task.3.task_abc")
    expect(Subjects.event("proj_p", "session", "sess_s", "session.failed")).toBe(
      "sam.evt.proj_p.session.sess_s.session.failed"
    )
    expect(Subjects.nodeCommand("node_a", "workspace.create")).toBe("sam.node.node_a.cmd.workspace.create")
    expect(Subjects.agentReport("node_a", "session.update", "sess_s")).toBe(
      "sam.agent.node_a.rpt.session.update.sess_s"
    )
    expect(Subjects.heartbeat("node_a")).toBe("sam.agent.node_a.hb")
    expect(Subjects.pty("node_a", "pty1", "in")).toBe("sam.pty.node_a.pty1.in")
    expect(Subjects.ingress("user_u", "tok_t", "task.create")).toBe("sam.in.user_u.tok_t.task.create")
    expect(Subjects.parseIngress("sam.in.user_u.tok_t.task.create")).toEqual({
      userId: "user_u",
      tokenId: "tok_t",
      commandName: "task.create"
    })
    expect(Subjects.parseIngress("sam.in.user_u.task")).toBeUndefined()
  })

  it.each(["a.>", "*", "a b", "", ">", "node.x", "a\nb", "ä"])("refuse the hostile id %j", (id) => {
    expect(() => Subjects.nodeAll(id)).toThrow(InvalidSubjectToken)
    expect(() => Subjects.command("task", 0, id)).toThrow(InvalidSubjectToken)
  })

  it("spread ids over shards stably and evenly", () => {
    const ids = Array.from({ length: 4000 }, () => makeId("task"))
    const counts = new Array(16).fill(0)
    for (const id of ids) counts[shardOf(id, 16)]++
    expect(ids.map((id) => shardOf(id, 16))).toEqual(ids.map((id) => shardOf(id, 16)))
    expect(Math.min(...counts)).toBeGreaterThan(150)
    expect(Math.max(...counts)).toBeLessThan(350)
  })

  it("make ids that parse as their own kind only", () => {
    const id = makeId("node")
    expect(NodeId.safeParse(id).success).toBe(true)
    expect(NodeId.safeParse(makeId("task")).success).toBe(false)
    expect(NodeId.safeParse("node_x.>").success).toBe(false)
  })
})
