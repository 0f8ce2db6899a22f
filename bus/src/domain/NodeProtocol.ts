import { z } from "zod"
import { defineMessage, type EnvelopeOf, registry } from "../Envelope.js"
import { NodeId, ProjectId, SessionId, TaskId, WorkspaceId } from "../Ids.js"
import { NodeXkey, SealedLaunch } from "./AgentLaunchSchema.js"
import { controlPlaneKinds, SessionEventBody } from "./SessionEventBody.js"
import { Activity } from "./SessionState.js"

/**
 * The protocol between the control plane and a node's vm-agent (design §4): commands on
 * `sam.node.<nodeId>.cmd.<type>` (stream SAM_NODE), reports on `sam.agent.<nodeId>.rpt.<type>[.<id>]`
 * (stream SAM_AGENT), heartbeats on core `sam.agent.<nodeId>.hb`. Every report is checked by the
 * control plane against the ledger: a report naming a workspace or session not placed on the
 * reporting node is dropped and audited.
 */

/** A runtime environment variable of a workspace. */
export const EnvVar = z.object({
  name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/),
  value: z.string().max(32_768),
  /** secret values are never logged or reported back */
  secret: z.boolean().default(false)
})

/** A file written into a workspace at creation: a relative path is inside the checkout, `~/…` in the home. */
export const RuntimeFile = z.object({
  path: z
    .string()
    .min(1)
    .max(512)
    .refine((p) => !p.split("/").includes(".."), "no .. in runtime file paths"),
  content: z.string().max(1_048_576),
  mode: z.number().int().min(0).max(0o777).optional()
})

export const AgentKind = z.enum(["demo", "claude-code", "codex", "gemini", "opencode"])
export type AgentKind = z.infer<typeof AgentKind>

export const TaskMode = z.enum(["task", "conversation"])
export type TaskMode = z.infer<typeof TaskMode>

// ── control plane → vm-agent ────────────────────────────────────────────────────────────────

export const WorkspaceCreate = defineMessage(
  "workspace.create",
  z.object({
    workspaceId: WorkspaceId,
    projectId: ProjectId,
    repoUrl: z.string().min(1).max(2048),
    branch: z.string().max(255).optional(),
    runtime: z.enum(["docker", "host", "auto"]).default("auto"),
    env: z.array(EnvVar).max(200).default([]),
    files: z.array(RuntimeFile).max(100).default([])
  }),
  { durable: true }
)

export const WorkspaceStop = defineMessage("workspace.stop", z.object({ workspaceId: WorkspaceId }), {
  durable: true
})
export const WorkspaceDelete = defineMessage("workspace.delete", z.object({ workspaceId: WorkspaceId }), {
  durable: true
})

export const SessionStart = defineMessage(
  "session.start",
  z.object({
    sessionId: SessionId,
    workspaceId: WorkspaceId,
    taskId: TaskId.optional(),
    agent: AgentKind,
    mode: TaskMode,
    prompt: z.string().min(1).max(200_000),
    /** the agent's own session id from an earlier run, to load rather than start anew */
    acpSessionId: z.string().max(256).optional(),
    /** credential, runtime variables and files, model and mode, sealed to this node's xkey (ADR 0024) */
    launch: SealedLaunch.optional()
  }),
  { durable: true }
)

export type SessionStartBody = z.output<typeof SessionStart.body>

export const SessionPrompt = defineMessage(
  "session.prompt",
  z.object({ sessionId: SessionId, prompt: z.string().min(1).max(200_000), promptEpoch: z.number().int().positive() }),
  { durable: true }
)
export const SessionCancel = defineMessage("session.cancel", z.object({ sessionId: SessionId }), { durable: true })
export const SessionStop = defineMessage("session.stop", z.object({ sessionId: SessionId }), { durable: true })
/** Answer the agent's pending permission request `requestId` with one of its options, or `cancelled` (ADR 0018). */
export const SessionPermissionAnswer = defineMessage(
  "session.permission-answer",
  z.object({ sessionId: SessionId, requestId: z.string().min(1).max(128), optionId: z.string().min(1).max(256) }),
  { durable: true }
)

export const nodeCommands = registry(
  WorkspaceCreate,
  WorkspaceStop,
  WorkspaceDelete,
  SessionStart,
  SessionPrompt,
  SessionCancel,
  SessionStop,
  SessionPermissionAnswer
)

export type NodeCommand = EnvelopeOf<(typeof nodeCommands.defs)[number]>

// ── vm-agent → control plane ───────────────────────────────────────────────────────────────

/**
 * A node's diagnostic text (a reason, a boot-log line) goes into `text` columns, which refuse the
 * NUL character: one shows as ␀ there rather than failing the report (agent output itself is kept
 * exactly, ADR 0017).
 */
const nodeText = (max: number) =>
  z
    .string()
    .max(max)
    .transform((text) => text.replaceAll("\u0000", "\u2400"))

export const NodeReady = defineMessage(
  "node.ready",
  z.object({
    nodeId: NodeId,
    version: nodeText(64),
    capabilities: z.object({ docker: z.boolean(), hostRuntime: z.boolean(), agents: z.array(AgentKind) })
  }),
  { durable: true }
)

/** At most this many of a node's workspaces are listed in a heartbeat: those that run first, then those that ended. */
export const MAX_INVENTORY_WORKSPACES = 1_000

export const Heartbeat = defineMessage(
  "node.heartbeat",
  z.object({
    nodeId: NodeId,
    load1: z.number().nonnegative(),
    memoryPercent: z.number().min(0).max(100),
    diskPercent: z.number().min(0).max(100),
    activeWorkspaces: z.number().int().nonnegative(),
    promptingSessions: z.array(SessionId).max(1000),
    /** the node's public curve key: what a session's launch is sealed to (ADR 0024) */
    xkey: NodeXkey.optional(),
    /** what the node holds, for the control plane's reconciler (ADR 0023); absent from older vm-agents */
    workspaces: z
      .array(z.object({ workspaceId: WorkspaceId, status: z.string().max(32) }))
      .max(MAX_INVENTORY_WORKSPACES)
      .optional(),
    /**
     * the node holds more workspaces than `workspaces` lists (every one being created or running is listed, then
     * as many stopped or failed ones as fit): one missing from the list may still be there
     */
    workspacesTruncated: z.boolean().optional(),
    /** sessions whose agent process runs on the node */
    agentSessions: z.array(SessionId).max(1000).optional()
  }),
  { durable: false }
)

export const WorkspaceStatusReport = defineMessage(
  "workspace.status-reported",
  z.object({
    workspaceId: WorkspaceId,
    status: z.enum(["creating", "running", "recovery", "stopped", "deleted", "error"]),
    runtime: z.enum(["docker", "host"]).optional(),
    reason: nodeText(4096).optional()
  }),
  { durable: true }
)

export const BootLog = defineMessage(
  "workspace.bootlog-reported",
  z.object({
    workspaceId: WorkspaceId,
    step: nodeText(64),
    status: z.enum(["started", "completed", "failed", "info"]),
    message: nodeText(4096)
  }),
  { durable: true }
)

/** Most boot log lines in one `workspace.bootlogs` report (each at most 4 KiB: the report stays far below 1 MiB). */
export const MAX_BOOTLOG_LINES_PER_REPORT = 100

/**
 * A run of a workspace's boot log lines in the order they were written (issue 12): after a report the
 * vm-agent gathers what the creation logs for up to 100 ms (or until the create ends) and sends it as
 * one, so a clone's progress costs the ingress and the workspace actor a few commands, not one per line.
 */
export const BootLogs = defineMessage(
  "workspace.bootlogs-reported",
  z.object({
    workspaceId: WorkspaceId,
    lines: z
      .array(BootLog.body.pick({ step: true, status: true, message: true }))
      .min(1)
      .max(MAX_BOOTLOG_LINES_PER_REPORT)
  }),
  { durable: true }
)

export { SessionEventKind } from "./SessionEventBody.js"

/** The most JSON one session event may be in a node's report (a vm-agent cuts what is longer to fit). */
export const MAX_EVENT_BYTES = 256_000

export const SessionEvent = defineMessage(
  "session.event-reported",
  z.object({
    sessionId: SessionId,
    /** the node's order of events for this session; the session actor assigns the persisted seq */
    nodeSeq: z.number().int().positive(),
    promptEpoch: z.number().int().nonnegative(),
    /**
     * what the agent did (SessionEventBody), at most 256 kB of JSON; never an entry in the control
     * plane's name (`source: "control_plane"` is how the transcript marks what SAM itself recorded, so
     * a node must not be able to put words in its mouth)
     */
    event: SessionEventBody.refine(
      (event) => JSON.stringify(event).length <= MAX_EVENT_BYTES,
      "session event larger than 256 kB"
    )
      .refine(
        (event) => (event as { readonly source?: unknown }).source === undefined,
        "a node's event has no source: the control plane's entries are its own"
      )
      .refine((event) => !controlPlaneKinds.has(event.type), {
        error: (issue) =>
          `a node does not report ${String((issue.input as { readonly type?: unknown }).type)}: only the control plane records it`
      })
  }),
  { durable: true }
)

/** Most events in one `session.events` report, and its most bytes (a JetStream message holds 1 MiB). */
export const MAX_EVENTS_PER_REPORT = 1_000
export const MAX_EVENTS_REPORT_BYTES = 900_000

/**
 * A run of one session's events in the node's order, all of one prompt epoch (issue 12): the vm-agent
 * coalesces what the agent wrote while its previous report was being published, so a busy session
 * sends a few large reports and a quiet one a report per event, with no wait added.
 */
export const SessionEvents = defineMessage(
  "session.events-reported",
  z
    .object({
      sessionId: SessionId,
      promptEpoch: z.number().int().nonnegative(),
      events: z
        .array(z.object({ nodeSeq: SessionEvent.body.shape.nodeSeq, event: SessionEvent.body.shape.event }))
        .min(1)
        .max(MAX_EVENTS_PER_REPORT)
    })
    .refine(
      (body) => body.events.every((e, i) => i === 0 || e.nodeSeq > body.events[i - 1]!.nodeSeq),
      "events in the node's order"
    ),
  { durable: true }
)

export const SessionActivity = defineMessage(
  "session.activity-reported",
  z.object({
    sessionId: SessionId,
    activity: Activity,
    promptEpoch: z.number().int().nonnegative(),
    /**
     * ACP's stop reason as the agent answered it (`max_tokens`, `max_turn_requests` and `refusal`: it ended the turn
     * short of its work); `error`: the turn failed; `lost`: after a node restart, the turn that was in flight is gone
     * (ADR 0021)
     */
    stopReason: z
      .enum(["end_turn", "cancelled", "max_tokens", "max_turn_requests", "refusal", "error", "lost"])
      .optional(),
    reason: nodeText(2048).optional(),
    acpSessionId: z.string().max(256).optional(),
    observedAt: z.iso.datetime()
  }),
  { durable: true }
)

export type SessionActivityBody = z.output<typeof SessionActivity.body>

export const TaskResult = defineMessage(
  "task.result",
  z.object({
    taskId: TaskId,
    sessionId: SessionId,
    outcome: z.enum(["committed", "no_changes", "failed"]),
    branch: z
      .string()
      .max(255)
      .refine((b) => !b.includes("\u0000"), "a branch name holds no NUL")
      .optional(),
    commitSha: z
      .string()
      .regex(/^[0-9a-f]{40}$/)
      .optional(),
    reason: nodeText(4096).optional(),
    /**
     * where a failed task failed: its agent's turn (the agent answered the prompt with an error) or keeping its work
     * (commit and push); a node that does not say is taken to mean the keeping
     */
    failedIn: z.enum(["turn", "keep"]).optional()
  }),
  { durable: true }
)

/** A command the node could not act on: malformed, unknown target, conflicting. Nothing was changed. */
export const CommandRejected = defineMessage(
  "command.rejected",
  z.object({
    /** the refused message's id when it had one */
    messageId: z.string().max(128).optional(),
    commandType: z.string().max(128).optional(),
    subject: nodeText(512),
    code: z.enum(["malformed", "not_found", "conflict", "invalid", "unavailable", "busy"]),
    message: nodeText(4096)
  }),
  { durable: true }
)

export const agentReports = registry(
  NodeReady,
  WorkspaceStatusReport,
  BootLog,
  BootLogs,
  SessionEvent,
  SessionEvents,
  SessionActivity,
  TaskResult,
  CommandRejected
)

export type AgentReport = EnvelopeOf<(typeof agentReports.defs)[number]>
