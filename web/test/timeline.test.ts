import type * as Api from "@sam/bus/api"
import { describe, expect, it } from "vitest"
import { renderMarkdown } from "../src/lib/markdown"
import { attentionOf, elapsed } from "../src/lib/sessions"
import { Timeline } from "../src/lib/timeline"

const entry = (seq: number, event: Api.SessionEventBody, promptEpoch = 1) => ({ seq, promptEpoch, event })

describe("timeline", () => {
  it("merges a prompt's text, updates tool cards in place, and takes each seq once", () => {
    const t = new Timeline()
    t.add(entry(1, { type: "prompt-started", text: "run ls" }))
    t.add(
      entry(2, { type: "tool-call", toolCallId: "a", title: "ls", kind: "execute", status: "in_progress", content: [] })
    )
    t.add(
      entry(3, {
        type: "tool-call-update",
        toolCallId: "a",
        title: null,
        status: null,
        content: [{ type: "content", content: { type: "text", text: "README.md\n" } }]
      })
    )
    t.add(
      entry(4, {
        type: "tool-call-update",
        toolCallId: "a",
        title: null,
        status: "completed",
        content: [],
        rawOutput: { exitCode: 0 }
      })
    )
    t.add(entry(5, { type: "text", text: "Here " }))
    t.add(entry(6, { type: "text", text: "**it** is." }))
    expect(t.add(entry(6, { type: "text", text: "again" }))).toBe(false)
    expect(t.add(entry(3, { type: "text", text: "older" }))).toBe(false)
    expect(t.items.map((i) => i.kind)).toEqual(["user", "tool", "text"])
    const tool = t.items[1]
    expect(tool).toMatchObject({ status: "completed", output: "README.md\n" })
    expect(t.items[2]).toMatchObject({ html: "<p>Here <strong>it</strong> is.</p>" })
    expect(t.lastSeq).toBe(6)
  })

  it("shows a permission request's outcome by its option's name, and an interrupted turn", () => {
    const t = new Timeline()
    t.add(
      entry(1, {
        type: "permission-requested",
        requestId: "perm_1",
        toolCallId: "a",
        title: "edit",
        options: [{ optionId: "allow", name: "Allow", kind: "allow_once" }]
      })
    )
    t.add(entry(2, { type: "permission-resolved", requestId: "perm_1", outcome: "allow" }))
    t.add(entry(3, { type: "turn-ended", stopReason: "cancelled" }))
    expect(t.items[0]).toMatchObject({ kind: "permission", outcome: "Allow" })
    expect(t.items[1]).toMatchObject({ kind: "system", text: "Turn interrupted" })
  })

  it("says why a turn its agent ended short of its work ended, and nothing for a turn that ended as it should", () => {
    const t = new Timeline()
    t.add(entry(1, { type: "turn-ended", stopReason: "end_turn" }))
    t.add(entry(2, { type: "turn-ended", stopReason: "max_turn_requests" }))
    t.add(entry(3, { type: "turn-ended", stopReason: "refusal" }))
    expect(t.items.map((item) => item.kind === "system" && item.text)).toEqual([
      "Turn ended: the agent reached its limit of model requests",
      "Turn ended: the agent refused"
    ])
  })
})

describe("queued prompts", () => {
  const queued = (text: string) => ({ type: "prompt-queued" as const, text, source: "control_plane" as const })

  it("keeps a prompt queued while its turn waits, and shows it as the user's once its turn begins", () => {
    const t = new Timeline()
    t.add(entry(1, { type: "prompt-started", text: "first" }, 1))
    t.add(entry(2, { type: "text", text: "working on it" }, 1))
    t.add(entry(3, queued("second"), 2))
    t.add(entry(4, queued("third"), 3))
    expect(t.queued.map((q) => [q.epoch, q.text])).toEqual([
      [2, "second"],
      [3, "third"]
    ])
    // queued prompts are not items in place: the view shows them after the turn in progress
    expect(t.items.map((i) => i.kind)).toEqual(["user", "text"])
    t.add(entry(5, { type: "turn-ended", stopReason: "end_turn" }, 1))
    t.add(entry(6, { type: "prompt-started", text: "second" }, 2))
    expect(t.queued.map((q) => q.text)).toEqual(["third"])
    expect(t.items.filter((i) => i.kind === "user").map((i) => (i.kind === "user" ? i.text : ""))).toEqual([
      "first",
      "second"
    ])
  })

  it("says a queued prompt was not delivered when a later one began instead", () => {
    const t = new Timeline()
    t.add(entry(1, { type: "prompt-started", text: "first" }, 1))
    t.add(entry(2, queued("lost with its node"), 2))
    t.add(entry(3, { type: "turn-ended", stopReason: "lost", source: "control_plane" }, 1))
    t.add(entry(4, { type: "prompt-started", text: "sent later" }, 3))
    expect(t.queued).toEqual([])
    const notes = t.items.filter((i) => i.kind === "system").map((i) => (i.kind === "system" ? i.text : ""))
    expect(notes).toContain("Not delivered (the agent never began its turn): lost with its node")
  })
})

describe("markdown", () => {
  it("never lets an agent's HTML through", () => {
    const html = renderMarkdown('<img src=x onerror="alert(1)"> `<b>` [x](javascript:alert(1))')
    expect(html).not.toContain("<img")
    expect(html).not.toContain("<b>")
    expect(html).not.toContain('href="javascript')
    expect(html).toContain("&lt;img")
  })

  it("renders code fences, lists and links", () => {
    expect(renderMarkdown("```\na < b\n```")).toBe("<pre><code>a &lt; b</code></pre>")
    expect(renderMarkdown("- one\n- two")).toBe("<ul><li>one</li><li>two</li></ul>")
    expect(renderMarkdown("[docs](https://example.com)")).toContain('href="https://example.com"')
  })
})

describe("session status", () => {
  const base = {
    id: "sess_a",
    status: "active",
    taskStatus: "in_progress",
    snapshot: { activity: "prompting", permissions: [] }
  }
  // biome-ignore lint/suspicious/noExplicitAny: a partial session is enough for the status
  const of = (patch: Record<string, unknown>) => attentionOf({ ...base, ...patch } as any)

  it("follows the precedence needs input › failed › working › idle › sleeping › completed › stopped", () => {
    expect(of({ snapshot: { activity: "prompting", permissions: [{ requestId: "p" }] } })).toBe("needs_input")
    expect(of({ status: "failed" })).toBe("failed")
    expect(of({})).toBe("working")
    expect(of({ snapshot: { activity: "idle" } })).toBe("idle")
    expect(of({ status: "sleeping", snapshot: null })).toBe("sleeping")
    expect(of({ status: "stopped", taskStatus: "completed" })).toBe("completed")
    expect(of({ status: "stopped", taskStatus: "cancelled" })).toBe("stopped")
  })

  it("never shows a session working when its task has ended, even if the snapshot says so", () => {
    expect(of({ taskStatus: "completed" })).toBe("completed")
    // nor sleeping: its agent sleeps, but no follow-up can wake it
    expect(of({ status: "sleeping", taskStatus: "completed", snapshot: null })).toBe("completed")
    expect(of({ status: "sleeping", taskStatus: "cancelled", snapshot: null })).toBe("stopped")
    expect(of({ taskStatus: "cancelled" })).toBe("stopped")
    expect(of({ taskStatus: "failed" })).toBe("failed")
  })

  it("counts elapsed time from when the prompt started", () => {
    expect(elapsed("2026-01-01T00:00:00.000Z", Date.parse("2026-01-01T00:01:05.000Z"))).toBe("1m 05s")
    expect(elapsed("2026-01-01T00:00:00.000Z", Date.parse("2026-01-01T00:00:07.400Z"))).toBe("7s")
  })
})
