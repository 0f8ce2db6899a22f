import type { Report } from "../src/VmAgentProcess.js"

/** Every tool call of one session: its command, its whole output and its exit code. */
export const toolCalls = (reports: ReadonlyArray<Report>, sessionId: string) => {
  const calls = new Map<string, { command: string; output: string; exitCode?: number }>()
  for (const r of reports) {
    if (r.type !== "session.event" || r.body.sessionId !== sessionId) continue
    const event = r.body.event as {
      type: string
      toolCallId?: string
      title?: string | null
      content?: ReadonlyArray<{ content?: { text?: string } }>
      rawOutput?: { exitCode?: number } | null
    }
    if (event.toolCallId === undefined) continue
    const call = calls.get(event.toolCallId) ?? { command: event.title ?? "", output: "" }
    for (const part of event.content ?? []) call.output += part.content?.text ?? ""
    if (typeof event.rawOutput?.exitCode === "number") call.exitCode = event.rawOutput.exitCode
    calls.set(event.toolCallId, call)
  }
  return [...calls.values()]
}
