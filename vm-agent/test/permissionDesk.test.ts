import { describe, expect, it } from "vitest"
import { PermissionDesk } from "../src/acp/internal/PermissionDesk.js"
import type { SessionEventBody } from "../src/acp/SessionEvent.js"

const request = (title: string) =>
  ({
    sessionId: "s",
    toolCall: { toolCallId: "tool_1", title },
    options: [{ optionId: "allow", name: "Allow", kind: "allow_once" }]
  }) as never

const asked = (events: ReadonlyArray<SessionEventBody>) =>
  events.flatMap((event) => (event.type === "permission-requested" ? [event.requestId] : []))

describe("permission request ids", () => {
  it("never repeat across desks: an answer kept from before a restart cannot answer a new request", async () => {
    const before: Array<SessionEventBody> = []
    const first = new PermissionDesk((event) => before.push(event), undefined)
    void first.ask(request("deploy"))
    void first.ask(request("deploy again"))
    const after: Array<SessionEventBody> = []
    const second = new PermissionDesk((event) => after.push(event), undefined)
    void second.ask(request("deploy"))
    const [old1, old2] = asked(before)
    const [new1] = asked(after)
    expect(old1).toMatch(/^perm_[a-z0-9]+_1$/)
    expect(old2).toMatch(/^perm_[a-z0-9]+_2$/)
    expect(new1).toMatch(/^perm_[a-z0-9]+_1$/)
    expect(new1).not.toBe(old1)
    // The old id finds nothing on the new desk; the new request still waits for its own answer.
    expect(second.answer(old1 as string, "allow")).toBe(false)
    expect(second.answer(new1 as string, "allow")).toBe(true)
  })
})
