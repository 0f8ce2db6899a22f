import { z } from "zod"
import { defineMessage, registry } from "../Envelope.js"
import { NodeId, ProjectId, SessionId, TaskId, WorkspaceId } from "../Ids.js"
import { AgentKind, TaskMode } from "./NodeProtocol.js"
import { SessionEventBody } from "./SessionEventBody.js"
import { SessionSnapshot } from "./SessionState.js"

/**
 * Domain events of the session actor, on `sam.evt.<projectId>.session.<sessionId>.<type>` (stream
 * SAM_EVT, published through the actor's outbox after its transaction committed, so a reader never
 * sees an event whose state change did not happen). Consumers must tolerate a repeat: a relay that
 * crashed after publishing and before marking may publish once more, with the same `Nats-Msg-Id`.
 */

export const SessionOpened = defineMessage(
  "session.opened",
  z.object({
    sessionId: SessionId,
    projectId: ProjectId,
    taskId: TaskId.optional(),
    workspaceId: WorkspaceId,
    nodeId: NodeId,
    agent: AgentKind,
    mode: TaskMode
  }),
  { durable: true }
)

/**
 * One transcript entry. `seq` is the session's own sequence (1, 2, 3… with no gaps), assigned by
 * the session actor in the transaction that persisted the entry; a client catching up asks for
 * every `seq` above the last it saw (design §7).
 */
export const SessionEventAppended = defineMessage(
  "session.event",
  z.object({
    sessionId: SessionId,
    seq: z.number().int().positive(),
    promptEpoch: z.number().int().nonnegative(),
    /** absent for an entry the control plane itself recorded (`permission-answered`) */
    nodeSeq: z.number().int().positive().optional(),
    event: SessionEventBody
  }),
  { durable: true }
)

/** A transcript entry as a `session.event-batch` carries it: a `session.event`'s body without the session. */
export const SessionEventEntry = SessionEventAppended.body.omit({ sessionId: true })
export type SessionEventEntry = z.output<typeof SessionEventEntry>

/** At most this many entries in one `session.event-batch`, and about this many bytes of them. */
export const MAX_BATCH_ENTRIES = 128
export const MAX_BATCH_BYTES = 256 * 1024

/**
 * Consecutive transcript entries of one session persisted in one transaction (a busy agent's run of reports),
 * published as one message instead of a `session.event` each (issue 12): one outbox row, one publish and one
 * decode per batch. Entries are in seq order with no gap; a lone entry still goes as a `session.event`.
 */
export const SessionEventBatch = defineMessage(
  "session.event-batch",
  z.object({ sessionId: SessionId, entries: z.array(SessionEventEntry).min(1).max(MAX_BATCH_ENTRIES) }),
  { durable: true }
)

/** The snapshot in KV `sam_session_state` changed; carries the new snapshot. */
export const SessionActivityChanged = defineMessage(
  "session.activity",
  z.object({ sessionId: SessionId, snapshot: SessionSnapshot }),
  { durable: true }
)

/** A user's prompt was accepted and handed to the node with this epoch. */
export const SessionPromptAccepted = defineMessage(
  "session.prompt-accepted",
  z.object({ sessionId: SessionId, promptEpoch: z.number().int().positive(), prompt: z.string() }),
  { durable: true }
)

export const SessionStopped = defineMessage(
  "session.stopped",
  z.object({ sessionId: SessionId, reason: z.string().max(1000).optional() }),
  { durable: true }
)

/**
 * The session's task completed: its agent process was stopped (its memory given back) and the session
 * sleeps; it takes no prompts (ADR 0023). A stop of its workspace later stops it.
 */
export const SessionSlept = defineMessage(
  "session.slept",
  z.object({ sessionId: SessionId, reason: z.string().max(1000) }),
  { durable: true }
)

/** The session failed (its task failed, or its agent could not be kept alive); it takes no more prompts. */
export const SessionFailed = defineMessage(
  "session.failed",
  z.object({ sessionId: SessionId, reason: z.string().max(4096) }),
  { durable: true }
)

export const sessionEvents = registry(
  SessionOpened,
  SessionEventAppended,
  SessionEventBatch,
  SessionActivityChanged,
  SessionPromptAccepted,
  SessionStopped,
  SessionSlept,
  SessionFailed
)
