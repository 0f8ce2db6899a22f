import { Domain, makeId } from "@sam/bus"
import { describe, expect, it } from "vitest"
import { fitEvent } from "../src/node/FitEvent.js"

const { NodeProtocol } = Domain
const sessionId = makeId("sess")
/** Whether the event goes out in a report, as the control plane's ingress checks it. */
const reportable = (event: Domain.SessionEventBody) =>
  NodeProtocol.SessionEvent.body.safeParse({ sessionId, nodeSeq: 1, promptEpoch: 1, event }).success &&
  NodeProtocol.SessionEvents.body.safeParse({ sessionId, promptEpoch: 1, events: [{ nodeSeq: 1, event }] }).success

describe("fitEvent: an event larger than a report may carry", () => {
  it("leaves an event that fits as it is", () => {
    const event: Domain.SessionEventBody = { type: "text", text: "x".repeat(200_000) }
    expect(fitEvent(event).event).toBe(event)
  })

  it("cuts a prompt whose JSON is too long (200,000 quotes are 400 kB escaped), saying how much", () => {
    const event: Domain.SessionEventBody = { type: "prompt-started", text: `review this\n${'"'.repeat(200_000)}` }
    expect(reportable(event)).toBe(false)
    const fitted = fitEvent(event).event
    expect(reportable(fitted)).toBe(true)
    expect(fitted.type).toBe("prompt-started")
    if (fitted.type !== "prompt-started") return
    expect(fitted.text.startsWith('review this\n"""')).toBe(true)
    expect(fitted.text).toMatch(/… \[\d+ characters cut: an event may carry at most 256 kB\]$/)
  })

  it("keeps a tool call's ids, status and kinds while cutting its output and its raw output", () => {
    const output = "line of a very long log\n".repeat(60_000)
    const event: Domain.SessionEventBody = {
      type: "tool-call-update",
      toolCallId: "call_7",
      title: "cat build.log",
      status: "completed",
      content: [{ type: "content", content: { type: "text", text: output } }],
      rawOutput: { exitCode: 0, stdout: output, lines: output.split("\n") }
    }
    expect(reportable(event)).toBe(false)
    const fitted = fitEvent(event).event
    expect(reportable(fitted)).toBe(true)
    expect(fitted).toMatchObject({
      type: "tool-call-update",
      toolCallId: "call_7",
      title: "cat build.log",
      status: "completed",
      content: [{ type: "content", content: { type: "text" } }],
      rawOutput: { exitCode: 0 }
    })
  })

  it("shortens a list too long even once its strings are cut", () => {
    const event: Domain.SessionEventBody = {
      type: "plan",
      entries: Array.from({ length: 20_000 }, (_, i) => ({ content: `step ${i}`, status: "pending", priority: "low" }))
    }
    expect(reportable(event)).toBe(false)
    const fitted = fitEvent(event).event
    expect(reportable(fitted)).toBe(true)
    if (fitted.type === "plan")
      expect(fitted.entries[0]).toEqual({ content: "step 0", status: "pending", priority: "low" })
  })
})
