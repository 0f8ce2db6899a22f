import { Domain, type Envelope, makeId } from "@sam/bus"
import { Effect } from "effect"
import { is, type Report, type reportWaiter } from "../src/VmAgentProcess.js"

/** Every tool call of one session: its command, its whole output and its exit code. */
export const toolCalls = (reports: ReadonlyArray<Report>, sessionId: string) => {
  const calls = new Map<string, { command: string; output: string; exitCode?: number }>()
  for (const r of reports) {
    if (r.type !== "session.event-reported" || r.body.sessionId !== sessionId) continue
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

/**
 * The attacker's turn: the demo agent, in `workspaceId`, runs each command with `run` in one prompt;
 * resolves once the turn ended, with each command's call (in order, the same commands as given).
 */
export const attackTurn = <E, R>(
  node: {
    readonly send: (envelope: Envelope) => Effect.Effect<unknown, E, R>
    readonly waitFor: ReturnType<typeof reportWaiter>["waitFor"]
    readonly reports: { readonly all: () => Effect.Effect<Array<Report>> }
  },
  workspaceId: string,
  commands: ReadonlyArray<string>
) =>
  Effect.gen(function* () {
    const sessionId = makeId("sess")
    yield* node.send(
      Domain.NodeProtocol.SessionStart.make({
        sessionId,
        workspaceId: workspaceId as never,
        agent: "demo",
        mode: "conversation",
        prompt: commands.map((command) => `run ${command}`).join("\n")
      })
    )
    yield* node.waitFor(
      "the attack's turn ends",
      is("session.activity-reported", (r) => r.body.sessionId === sessionId && r.body.stopReason === "end_turn"),
      "60 seconds"
    )
    const all = yield* node.reports.all()
    return { sessionId, all, calls: toolCalls(all, sessionId) }
  })
