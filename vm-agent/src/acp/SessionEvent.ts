import type {
  ContentBlock,
  PermissionOption,
  PlanEntry,
  SessionUpdate,
  StopReason,
  ToolCallContent,
  ToolCallStatus,
  ToolKind
} from "@agentclientprotocol/sdk"

/**
 * What happened in a session, as the host reports it. `SessionEvent` adds the per-session `seq`. Each member must
 * stay assignable to the bus's `SessionEventBody` (the reporter takes no other): the contract is checked here.
 */
export type SessionEventBody =
  | { readonly type: "agent-started"; readonly pid: number; readonly acpSessionId: string; readonly loaded: boolean }
  | { readonly type: "prompt-started"; readonly text: string }
  | { readonly type: "text"; readonly text: string }
  | { readonly type: "thought"; readonly text: string }
  | { readonly type: "plan"; readonly entries: Array<PlanEntry> }
  | {
      readonly type: "tool-call"
      readonly toolCallId: string
      readonly title: string
      readonly kind: ToolKind | null
      readonly status: ToolCallStatus | null
      readonly content: Array<ToolCallContent>
    }
  | {
      readonly type: "tool-call-update"
      readonly toolCallId: string
      readonly title: string | null
      /** ACP's, or `cancelled`: SAM's own, for a call its turn ended without finishing (ACP asks the client to) */
      readonly status: ToolCallStatus | "cancelled" | null
      readonly content: Array<ToolCallContent>
      readonly rawOutput: unknown
    }
  | {
      readonly type: "permission-requested"
      readonly requestId: string
      readonly toolCallId: string
      readonly title: string | null
      readonly options: Array<PermissionOption>
    }
  | { readonly type: "permission-resolved"; readonly requestId: string; readonly outcome: string }
  | { readonly type: "update"; readonly update: SessionUpdate }
  | { readonly type: "turn-ended"; readonly stopReason: StopReason; readonly usage?: unknown }
  | { readonly type: "turn-failed"; readonly message: string }
  | { readonly type: "cancelled"; readonly forced: boolean; readonly stopMs: number }
  | {
      readonly type: "crashed"
      readonly exitCode: number | null
      readonly signal: string | null
      readonly stderrTail: string
    }
  | {
      readonly type: "restarted"
      readonly reason: "cancel" | "crash"
      readonly attempt: number
      readonly contextLost: boolean
    }
  | { readonly type: "failed"; readonly reason: string }
  | { readonly type: "stopped" }
  | { readonly type: "agent-output-ignored"; readonly line: string }

export type SessionEvent = SessionEventBody & {
  /** Per host, starts at 1 and grows by one with each event: no gaps, no repeats. */
  readonly seq: number
  readonly at: number
}

const textOf = (update: { readonly content: ContentBlock }): string =>
  update.content.type === "text" ? update.content.text : `[${update.content.type}]`

/** Maps an ACP `session/update` to the event the host reports. */
export const eventOfUpdate = (update: SessionUpdate): SessionEventBody => {
  switch (update.sessionUpdate) {
    case "agent_message_chunk":
      return { type: "text", text: textOf(update) }
    case "agent_thought_chunk":
      return { type: "thought", text: textOf(update) }
    case "plan":
      return { type: "plan", entries: update.entries }
    case "tool_call":
      return {
        type: "tool-call",
        toolCallId: update.toolCallId,
        title: update.title,
        kind: update.kind ?? null,
        status: update.status ?? null,
        content: update.content ?? []
      }
    case "tool_call_update":
      return {
        type: "tool-call-update",
        toolCallId: update.toolCallId,
        title: update.title ?? null,
        status: update.status ?? null,
        content: update.content ?? [],
        rawOutput: update.rawOutput ?? null
      }
    default:
      return { type: "update", update }
  }
}
