import { describe, expect, it } from "vitest"
import { Domain } from "../src/index.js"

const { advanceStep, ExecutionStep, taskTransition, TaskStatus, visibleSessionStatus, sessionTransition } = Domain

describe("task status", () => {
  it("allows the documented path and retry", () => {
    const path = ["draft", "ready", "queued", "delegated", "in_progress", "failed", "ready"] as const
    for (let i = 1; i < path.length; i++) expect(taskTransition(path[i - 1]!, path[i]!)._tag).toBe("Allowed")
  })

  it("refuses an illegal move with the allowed list", () => {
    const refused = taskTransition("completed", "in_progress")
    expect(refused).toMatchObject({ _tag: "Refused", allowed: [] })
    const fromDraft = taskTransition("draft", "completed")
    expect(fromDraft._tag === "Refused" && fromDraft.message).toBe(
      "invalid task transition draft → completed; allowed from draft: ready, cancelled"
    )
  })

  it("treats the same status again as unchanged, so a redelivered command is harmless", () => {
    for (const status of TaskStatus.options) expect(taskTransition(status, status)._tag).toBe("Unchanged")
  })
})

describe("execution steps", () => {
  it("never go backwards but may skip", () => {
    expect(advanceStep(null, "node_selection")).toBe("node_selection")
    expect(advanceStep("node_selection", "workspace_creation")).toBe("workspace_creation")
    expect(advanceStep("running", "workspace_ready")).toBe("running")
    expect(ExecutionStep.options.at(-1)).toBe("awaiting_followup")
  })
})

describe("sessions", () => {
  it("are never shown active when their task is terminal", () => {
    expect(visibleSessionStatus("active", "in_progress")).toBe("active")
    expect(visibleSessionStatus("active", "failed")).toBe("failed")
    expect(visibleSessionStatus("active", "completed")).toBe("stopped")
    expect(visibleSessionStatus("active", null)).toBe("active")
  })

  it("do not come back from failed or stopped", () => {
    expect(sessionTransition("failed", "active")._tag).toBe("Refused")
    expect(sessionTransition("stopped", "active")._tag).toBe("Refused")
  })
})
