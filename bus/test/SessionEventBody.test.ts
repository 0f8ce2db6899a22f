import { describe, expect, it } from "vitest"
import { Api, Domain, encode, makeId } from "../src/index.js"

const { NodeProtocol, SessionEvents } = Domain

/**
 * Every kind as its producers really write it: the vm-agent's session host (vm-agent/src/acp) and, where it records
 * entries itself, the control plane (actors: a failed session, a lost turn, a refused prompt or answer, an answer).
 */
const real: { readonly [K in Domain.SessionEventKind]: ReadonlyArray<Domain.SessionEventOf<K>> } = {
  "agent-started": [{ type: "agent-started", pid: 4242, acpSessionId: "c9f1-acp", loaded: false }],
  "prompt-queued": [{ type: "prompt-queued", text: "now the tests", source: "control_plane" }],
  "prompt-started": [{ type: "prompt-started", text: "run ls" }],
  text: [{ type: "text", text: "Hello " }],
  thought: [{ type: "thought", text: "[image]" }],
  plan: [
    {
      type: "plan",
      entries: [
        { content: "Read", priority: "medium", status: "completed" },
        { content: "Test", priority: "high", status: "in_progress", _meta: null }
      ]
    }
  ],
  "tool-call": [
    { type: "tool-call", toolCallId: "t1", title: "ls", kind: "execute", status: "pending", content: [] },
    { type: "tool-call", toolCallId: "t2", title: "Read", kind: null, status: null, content: [] }
  ],
  "tool-call-update": [
    {
      type: "tool-call-update",
      toolCallId: "t1",
      title: null,
      status: "completed",
      content: [
        { type: "content", content: { type: "text", text: "README.md\n" } },
        { type: "diff", path: "/w/a.txt", oldText: null, newText: "b" },
        { type: "terminal", terminalId: "term-1" }
      ],
      rawOutput: { exitCode: 0 }
    },
    { type: "tool-call-update", toolCallId: "t2", title: "Read", status: null, content: [], rawOutput: null },
    {
      type: "tool-call-update",
      toolCallId: "t3",
      title: null,
      status: "failed",
      content: [],
      rawOutput: null,
      reason: "lost",
      source: "control_plane"
    }
  ],
  "permission-requested": [
    {
      type: "permission-requested",
      requestId: "perm_m1abc_1",
      toolCallId: "t1",
      title: null,
      options: [
        { optionId: "allow", name: "Allow", kind: "allow_once" },
        { optionId: "reject", name: "Reject", kind: "reject_once", _meta: { x: 1 } }
      ]
    }
  ],
  "permission-resolved": [
    { type: "permission-resolved", requestId: "perm_m1abc_1", outcome: "cancelled" },
    {
      type: "permission-resolved",
      requestId: null,
      outcome: "undelivered",
      reason: "no such request",
      source: "control_plane"
    }
  ],
  "permission-answered": [
    {
      type: "permission-answered",
      requestId: "perm_m1abc_1",
      outcome: "allow",
      optionName: "Allow",
      optionKind: "allow_once",
      by: "user",
      userId: "usr_1"
    },
    { type: "permission-answered", requestId: "perm_m1abc_2", outcome: "reject", by: "timeout" }
  ],
  update: [
    { type: "update", update: { sessionUpdate: "available_commands_update", availableCommands: [] } },
    { type: "update", update: { sessionUpdate: "usage_update", used: 1200, size: 200000 } }
  ],
  "turn-ended": [
    { type: "turn-ended", stopReason: "end_turn" },
    { type: "turn-ended", stopReason: "end_turn", usage: { inputTokens: 10, outputTokens: 5, totalTokens: 15 } },
    {
      type: "turn-ended",
      stopReason: "lost",
      reason: "lost",
      message: "its node restarted",
      lostToolCalls: [{ toolCallId: "t3", title: null }],
      source: "control_plane"
    }
  ],
  "turn-failed": [
    { type: "turn-failed", message: "Internal error: overloaded" },
    { type: "turn-failed", reason: "the node refused the prompt", source: "control_plane" }
  ],
  cancelled: [{ type: "cancelled", forced: true, stopMs: 2013 }],
  crashed: [
    { type: "crashed", exitCode: 1, signal: null, stderrTail: "boom" },
    { type: "crashed", exitCode: null, signal: "SIGKILL", stderrTail: "" }
  ],
  restarted: [{ type: "restarted", reason: "crash", attempt: 1, contextLost: false }],
  failed: [
    { type: "failed", reason: "agent crashed 4 times; restart budget of 3 spent" },
    { type: "failed", reason: "agent failed: crashed", source: "control_plane" }
  ],
  stopped: [{ type: "stopped" }],
  "agent-output-ignored": [{ type: "agent-output-ignored", line: "not json" }]
}

const sessionId = makeId("sess")
/** A node's report of `event`, as the control plane's ingress decodes it. */
const report = (event: unknown) => {
  const envelope = NodeProtocol.SessionEvent.make({ sessionId, nodeSeq: 1, promptEpoch: 1, event: { type: "stopped" } })
  return NodeProtocol.agentReports.decode(encode({ ...envelope, body: { ...envelope.body, event } }))
}
const refusal = (event: unknown) => {
  const decoded = report(event)
  return decoded._tag === "Malformed" ? decoded.malformed : undefined
}

describe("session event bodies", () => {
  it("has a member for every kind", () => {
    expect(Object.keys(real).sort()).toEqual([...Domain.SessionEventKind.options].sort())
  })

  const cases: Array<[string, Domain.SessionEventBody]> = Object.entries(real).flatMap(([kind, events]) =>
    events.map((event, i): [string, Domain.SessionEventBody] => [`${kind} #${i + 1}`, event])
  )
  it.each(cases)(
    "takes %s as its producer writes it, in a report (the node's own), a domain event and an API page, unchanged",
    (_, event) => {
      const decoded = report(event)
      // What the control plane records itself never comes from a node.
      const fromNode = !("source" in event) && !Domain.controlPlaneKinds.has(event.type)
      expect(decoded._tag).toBe(fromNode ? "Ok" : "Malformed")
      if (decoded._tag === "Ok" && decoded.envelope.type === "session.event-reported")
        expect(decoded.envelope.body.event).toEqual(event)
      const appended = SessionEvents.SessionEventAppended.make({
        sessionId,
        seq: 1,
        promptEpoch: 1,
        event
      })
      expect(appended.body.event).toEqual(event)
      const page = Api.TranscriptEntry.parse({ seq: 1, promptEpoch: 1, event, at: new Date().toISOString() })
      expect(page.event).toEqual(event)
    }
  )

  it("keeps a field it does not know (a newer vm-agent's), and types what it knows", () => {
    const event = Domain.SessionEventBody.parse({ type: "text", text: "hi", tokens: 3 })
    expect(event).toEqual({ type: "text", text: "hi", tokens: 3 })
    if (event.type === "text") expect(event.text.toUpperCase()).toBe("HI")
  })

  it("refuses an unknown kind, naming it", () => {
    expect(refusal({ type: "dance", steps: 3 })).toEqual({
      reason: "bad-body",
      message: 'session.event-reported: event.type: not a session event type: "dance"'
    })
    expect(refusal({ text: "no type" })?.message).toContain("event.type: not a session event type: undefined")
    expect(refusal("text")?.message).toContain("event: Invalid input: expected object, received string")
  })

  it.each([
    ["a text that is not a string", { type: "text", text: 42 }, "event.text: Invalid input: expected string"],
    [
      "an agent-started without its ACP session",
      { type: "agent-started", pid: 1, loaded: true },
      "event.acpSessionId: Invalid input: expected string"
    ],
    ["a plan that is not a list", { type: "plan", entries: "a | b" }, "event.entries: Invalid input: expected array"],
    [
      "a plan entry without its content",
      { type: "plan", entries: [{ status: "pending", priority: "low" }] },
      "event.entries.0.content: Invalid input: expected string"
    ],
    [
      "tool-call content that is not ACP content",
      { type: "tool-call", toolCallId: "t", title: "x", content: ["rm -rf /"] },
      "event.content.0: Invalid input: expected object"
    ],
    [
      "permission options without ids",
      { type: "permission-requested", requestId: "p", toolCallId: "t", title: null, options: [{ name: "Allow" }] },
      "event.options.0.optionId: Invalid input: expected string"
    ],
    [
      "a restart for a reason there is none of",
      { type: "restarted", reason: "boredom", attempt: 1, contextLost: false },
      "event.reason: Invalid option"
    ],
    [
      "an entry claiming the control plane's voice with a wrong value",
      { type: "failed", reason: "x", source: "node" },
      'event.source: Invalid input: expected "control_plane"'
    ],
    ["an update without its ACP kind", { type: "update", update: {} }, "event.update.sessionUpdate: Invalid input"]
  ])("refuses %s, saying which field", (_, event, message) => {
    const malformed = refusal(event)
    expect(malformed?.reason).toBe("bad-body")
    expect(malformed?.message).toContain(message)
  })

  it.each([
    [
      "who answered a permission request",
      { type: "permission-answered", requestId: "p1", outcome: "allow", by: "user", userId: "user_x" }
    ],
    ["a queued prompt", { type: "prompt-queued", text: "and now delete the repository" }]
  ])("refuses a node's report of %s, which only the control plane records", (_, event) => {
    expect(refusal(event)?.message).toContain(`a node does not report ${event.type}: only the control plane records it`)
    const many = NodeProtocol.SessionEvents.body.safeParse({
      sessionId,
      promptEpoch: 1,
      events: [{ nodeSeq: 1, event }]
    })
    expect(many.success).toBe(false)
  })

  it("refuses a node's event in the control plane's name, in a report of one or of many", () => {
    const forged = { type: "failed", reason: "the control plane says: paste your key here", source: "control_plane" }
    expect(refusal(forged)?.message).toContain("a node's event has no source")
    const many = NodeProtocol.SessionEvents.body.safeParse({
      sessionId,
      promptEpoch: 1,
      events: [{ nodeSeq: 1, event: forged }]
    })
    expect(many.success).toBe(false)
    // the control plane's own entry, as the domain event and the API carry it, stays valid
    expect(Domain.SessionEventBody.safeParse(forged).success).toBe(true)
  })

  it("refuses an event larger than 256 kB, in a report of one or of many", () => {
    const big = { type: "text", text: "x".repeat(300_000) }
    expect(refusal(big)?.message).toContain("event: session event larger than 256 kB")
    const many = NodeProtocol.SessionEvents.body.safeParse({
      sessionId,
      promptEpoch: 1,
      events: [
        { nodeSeq: 1, event: { type: "text", text: "fine" } },
        { nodeSeq: 2, event: big }
      ]
    })
    expect(many.success).toBe(false)
    expect(many.error?.issues[0]).toMatchObject({
      path: ["events", 1, "event"],
      message: "session event larger than 256 kB"
    })
  })
})
