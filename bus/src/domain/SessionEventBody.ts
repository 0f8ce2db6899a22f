import { z } from "zod"

/** What the agent did, as the node's session host saw it (text, thought, plan, tool call, lifecycle). */
export const SessionEventKind = z.enum([
  "agent-started",
  /** recorded by the control plane: a prompt accepted while the agent works, waiting for its turn */
  "prompt-queued",
  "prompt-started",
  "text",
  "thought",
  "plan",
  "tool-call",
  "tool-call-update",
  "permission-requested",
  "permission-resolved",
  /** recorded by the control plane: who answered a permission request (a user, the policy, its timeout) */
  "permission-answered",
  "update",
  "turn-ended",
  "turn-failed",
  "cancelled",
  "crashed",
  "restarted",
  "failed",
  "stopped",
  "agent-output-ignored"
])
export type SessionEventKind = z.infer<typeof SessionEventKind>

/**
 * The body of one session event: what the vm-agent's session host reports (vm-agent/src/acp) and the
 * entries the control plane records itself (`source: "control_plane"`: a failed session, a lost turn, a
 * permission answer). One member per kind, discriminated on `type`; a field of the wrong type or an
 * unknown `type` is refused.
 *
 * Each member keeps fields it does not name (`z.looseObject`): the transcript keeps what the agent sent
 * exactly (ADR 0017), so a stored entry, its live feed frame and its API page stay the same JSON, and a
 * newer vm-agent that adds a field is not refused by an older control plane. Nested ACP structures
 * (plan entries, tool-call content, permission options, raw `update`s) are checked only for the fields
 * SAM reads. The size bound (256 kB) is the report's (NodeProtocol.SessionEvent).
 */
const member = <const K extends SessionEventKind, S extends z.ZodRawShape>(type: K, shape: S) =>
  z.looseObject({ type: z.literal(type), ...shape })

/** only on an entry the control plane recorded itself; a node never sends it */
const source = z.literal("control_plane").optional()

/** ACP `ToolCallContent`: `content` (a content block), `diff` (path, oldText, newText) or `terminal` */
export const ToolCallContent = z.looseObject({ type: z.string() })
export type ToolCallContent = z.infer<typeof ToolCallContent>
/** ACP `PlanEntry`; status `pending` | `in_progress` | `completed`, priority `high` | `medium` | `low` */
export const SessionPlanEntry = z.looseObject({ content: z.string(), status: z.string(), priority: z.string() })
export type SessionPlanEntry = z.infer<typeof SessionPlanEntry>
/** ACP `PermissionOption`; kind `allow_once` | `allow_always` | `reject_once` | `reject_always` */
export const PermissionOption = z.looseObject({ optionId: z.string(), name: z.string(), kind: z.string() })
export type PermissionOption = z.infer<typeof PermissionOption>

export const SessionEventBody = z.discriminatedUnion(
  "type",
  [
    /** the agent process started (or was started again), with its ACP session (`loaded`: an earlier one) */
    member("agent-started", { pid: z.number().int(), acpSessionId: z.string(), loaded: z.boolean() }),
    /**
     * recorded by the control plane when it accepts a prompt while a turn is in progress (its entry's epoch is the
     * prompt's): the node runs it once the turns before it end, and its `prompt-started` says when
     */
    member("prompt-queued", { text: z.string(), source }),
    /** a turn began with this prompt */
    member("prompt-started", { text: z.string() }),
    member("text", { text: z.string() }),
    member("thought", { text: z.string() }),
    /** the agent's whole plan, each time it changes */
    member("plan", { entries: z.array(SessionPlanEntry) }),
    member("tool-call", {
      toolCallId: z.string(),
      title: z.string(),
      /** ACP `ToolKind`: read, edit, execute… */
      kind: z.string().nullable().optional(),
      /** ACP `ToolCallStatus`: pending, in_progress, completed, failed */
      status: z.string().nullable().optional(),
      content: z.array(ToolCallContent),
      /** ACP locations; the vm-agent does not send them today */
      locations: z.array(z.looseObject({ path: z.string(), line: z.number().nullable().optional() })).optional()
    }),
    /** a change of a tool call; `null` where nothing changed. A lost turn closes its open calls (`reason: "lost"`) */
    member("tool-call-update", {
      toolCallId: z.string(),
      title: z.string().nullable(),
      status: z.string().nullable(),
      content: z.array(ToolCallContent),
      rawOutput: z.unknown().optional(),
      reason: z.string().optional(),
      source
    }),
    member("permission-requested", {
      requestId: z.string(),
      toolCallId: z.string(),
      title: z.string().nullable(),
      options: z.array(PermissionOption)
    }),
    /**
     * the agent had its answer: the option chosen or `cancelled`; by the control plane `undelivered` when the node
     * refused the answer (its request id null when the refusal did not name it)
     */
    member("permission-resolved", {
      requestId: z.string().nullable(),
      outcome: z.string(),
      reason: z.string().optional(),
      source
    }),
    /** recorded by the control plane: who answered (a user, the policy, its timeout) and with which option */
    member("permission-answered", {
      requestId: z.string(),
      outcome: z.string(),
      optionName: z.string().optional(),
      optionKind: z.string().optional(),
      by: z.enum(["user", "policy", "timeout"]),
      userId: z.string().optional()
    }),
    /** an ACP `session/update` SAM does not map to an event of its own */
    member("update", { update: z.looseObject({ sessionUpdate: z.string() }) }),
    /**
     * the turn's end: an ACP stop reason (end_turn, max_tokens, max_turn_requests, refusal, cancelled) and its usage
     * where the agent reports it; `lost` (with `message` and the tool calls it closed) when recorded by the control plane
     */
    member("turn-ended", {
      stopReason: z.string(),
      /** the agent's own usage object, as it sent it (token counts: Claude Code, OpenCode) */
      usage: z.unknown().optional(),
      reason: z.string().optional(),
      message: z.string().optional(),
      lostToolCalls: z.array(z.looseObject({ toolCallId: z.string(), title: z.string().nullable() })).optional(),
      source
    }),
    /** the agent answered the prompt with an error (`message`), or the control plane ended it (`reason`) */
    member("turn-failed", { message: z.string().optional(), reason: z.string().optional(), source }),
    /** a cancel stopped the turn; `forced` when its grace ran out */
    member("cancelled", { forced: z.boolean(), stopMs: z.number() }),
    member("crashed", { exitCode: z.number().nullable(), signal: z.string().nullable(), stderrTail: z.string() }),
    member("restarted", { reason: z.enum(["cancel", "crash"]), attempt: z.number().int(), contextLost: z.boolean() }),
    /** the agent could not be kept alive (vm-agent), or the session failed (control plane) */
    member("failed", { reason: z.string(), source }),
    member("stopped", {}),
    /** a line the agent wrote that is not ACP (cut to 500 characters) */
    member("agent-output-ignored", { line: z.string() })
  ],
  {
    error: (issue) =>
      issue.code === "invalid_union" && issue.note === "No matching discriminator"
        ? `not a session event type: ${JSON.stringify((issue.input as { type?: unknown } | undefined)?.type)}`
        : undefined
  }
)
export type SessionEventBody = z.infer<typeof SessionEventBody>
/** The body of one kind of session event. */
export type SessionEventOf<K extends SessionEventKind> = Extract<SessionEventBody, { readonly type: K }>

/**
 * The kinds only the control plane records: a node's report of one is refused whatever its fields say (a node must
 * not be able to say who answered a permission request, or that the user queued a prompt).
 */
export const controlPlaneKinds: ReadonlySet<SessionEventKind> = new Set(["permission-answered", "prompt-queued"])

/**
 * Whether a tool call with this status is over: ACP's `completed` and `failed`, and `cancelled`, which SAM's
 * vm-agent says of a call its turn ended without finishing.
 */
export const toolCallFinished = (status: unknown) =>
  status === "completed" || status === "failed" || status === "cancelled"
