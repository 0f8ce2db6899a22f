import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { Domain } from "../src/index.js"

const { StateTable, TaskStatus, SessionStatus, WorkspaceStatus, NodeStatus } = Domain

describe("the state table (ADR 0023)", () => {
  it("names every state, and each way out is a move the transition tables allow", () => {
    expect(Object.keys(StateTable.taskStates).sort()).toEqual([...TaskStatus.options].sort())
    expect(Object.keys(StateTable.sessionStates).sort()).toEqual([...SessionStatus.options].sort())
    expect(Object.keys(StateTable.workspaceStates).sort()).toEqual([...WorkspaceStatus.options].sort())
    expect(Object.keys(StateTable.nodeStates).sort()).toEqual([...NodeStatus.options].sort())
    expect(StateTable.illegalWaysOut()).toEqual([])
  })

  it("a state that is not terminal has a way out", () => {
    const stuck = [
      StateTable.taskStates,
      StateTable.sessionStates,
      StateTable.workspaceStates,
      StateTable.nodeStates
    ].flatMap((table) =>
      Object.entries(table).filter(([, row]) => row.wayOut.length === 0 && !row.evidence.startsWith("terminal"))
    )
    expect(stuck).toEqual([])
  })

  it("docs/architecture.md shows the table as the code has it", () => {
    const doc = readFileSync(new URL("../../docs/architecture.md", import.meta.url), "utf8")
    const begin = "<!-- state-table:begin -->\n"
    const end = "<!-- state-table:end -->"
    const shown = doc.slice(doc.indexOf(begin) + begin.length, doc.indexOf(end)).trim()
    // Regenerate with: pnpm exec tsx -e 'import("./bus/src/domain/StateTable.ts").then((m) => console.log(m.renderStateTable()))'
    expect(shown).toBe(StateTable.renderStateTable().trim())
  })
})
