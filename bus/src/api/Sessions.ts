import { z } from "zod"
import { SessionRow } from "../domain/Rows.js"
import { SessionEventBody } from "../domain/SessionEventBody.js"
import { SessionSnapshot } from "../domain/SessionState.js"
import { SessionStatus, TaskStatus } from "../domain/States.js"
import { ProjectId, SessionId } from "../Ids.js"
import { endpoint } from "./Endpoint.js"
import { limit } from "./Paging.js"
import { storable } from "./Text.js"

export const PromptRequest = z.object({ prompt: z.string().min(1).max(200_000) })
export const PromptAccepted = z.object({ sessionId: SessionId, promptEpoch: z.number().int().nonnegative() })
/**
 * The answer to a cancel: `cancelling` when a turn was in flight and its node was asked to stop it
 * (the turn then ends `cancelled` on the feed and the session awaits a follow-up), `idle` when nothing
 * was in flight (nothing was sent); `accepted` is true only for `cancelling`.
 */
export const Accepted = z.object({
  sessionId: SessionId,
  status: z.enum(["cancelling", "idle"]),
  accepted: z.boolean()
})

/** The answer to a permission request: one of its options (`optionId`), or `{outcome: "cancelled"}`. */
export const OptionAnswer = z.object({ optionId: storable(z.string().min(1).max(256)) })
export const CancelAnswer = z.object({ outcome: z.literal("cancelled") })
export const AnswerPermissionRequest = z.union([OptionAnswer.strict(), CancelAnswer.strict()])
export const PermissionAnswered = z.object({
  sessionId: SessionId,
  requestId: z.string(),
  /** the option chosen, or `cancelled` */
  outcome: z.string()
})

/**
 * A chat session as a reader sees it. `status` and `snapshot.activity` are derived (design §6): a
 * session whose task has ended is never shown `active`, nor its snapshot `prompting`/`recovering`,
 * even if a transition was missed; `storedStatus` is the ledger's own value.
 */
export const Session = SessionRow.extend({
  storedStatus: SessionStatus,
  taskStatus: TaskStatus.nullable(),
  /**
   * the user whose agent it is (its task's submitter): only they prompt it and answer it; they or an owner of the
   * project cancel or stop it (ADR 0047)
   */
  startedBy: z.string().nullable(),
  promptEpoch: z.number().int().nonnegative(),
  /** the seq of its last transcript entry */
  lastSeq: z.number().int().nonnegative(),
  /** the pull request its task opened (task mode on a GitHub App repository, ADR 0028) */
  prUrl: z.string().nullable(),
  /** the activity snapshot from KV `sam_session_state`; null before the first */
  snapshot: SessionSnapshot.nullable(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
  endedAt: z.iso.datetime().nullable(),
  /**
   * What the agent reported of its usage; null when it reported nothing (the demo agent). Token counts are summed
   * over the turns whose answer carried them (each turn's is on its `turn-ended` transcript entry: Claude Code,
   * OpenCode); `context` and `cost` are from the agent's latest ACP `usage_update` (tokens in its context window
   * and the session's cumulative cost), where it sends them.
   */
  usage: z
    .object({
      turns: z.number().int().nonnegative(),
      inputTokens: z.number().int().nonnegative(),
      outputTokens: z.number().int().nonnegative(),
      totalTokens: z.number().int().nonnegative(),
      context: z
        .object({ usedTokens: z.number().nonnegative(), sizeTokens: z.number().nonnegative() })
        .nullable()
        .optional(),
      cost: z.object({ amount: z.number(), currency: z.string() }).nullable().optional()
    })
    .nullable()
    .optional()
})
export type Session = z.infer<typeof Session>

export const ListSessionsQuery = z.object({ limit: limit(50, 200), before: SessionId.optional() })
export const SessionList = z.object({ sessions: z.array(Session), nextBefore: SessionId.nullable() })

/** What the agent did, one kind per `type` (the same body on the node's reports, the bus and the feed). */
export {
  PermissionOption,
  SessionEventBody,
  type SessionEventKind,
  type SessionEventOf,
  SessionPlanEntry,
  ToolCallContent
} from "../domain/SessionEventBody.js"

/** One transcript entry; `event` is what the agent did (`type` is its kind: text, thought, tool-call…). */
export const TranscriptEntry = z.object({
  seq: z.number().int().positive(),
  promptEpoch: z.number().int().nonnegative().nullable(),
  event: SessionEventBody,
  at: z.iso.datetime()
})

export const TranscriptQuery = z.object({
  afterSeq: z.coerce.number().int().nonnegative().default(0),
  limit: limit(200, 1000)
})
export const TranscriptPage = z.object({
  sessionId: SessionId,
  events: z.array(TranscriptEntry),
  /** ask again with `afterSeq` = this for the next page; null when this page reached the end */
  nextAfterSeq: z.number().int().nonnegative().nullable(),
  lastSeq: z.number().int().nonnegative()
})

const ProjectParams = z.object({ projectId: ProjectId })
const SessionParams = z.object({ sessionId: SessionId })
/** a request id as the node reports it (`perm_<host>_<n>`) */
export const PermissionRequestId = z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, "not a permission request id")
export const PermissionParams = z.object({ sessionId: SessionId, requestId: PermissionRequestId })

export const SessionEndpoints = {
  listSessions: endpoint({
    method: "GET",
    path: "/projects/:projectId/sessions",
    summary: "A project's chat sessions, newest first, with status and activity snapshot",
    tag: "sessions",
    params: ProjectParams,
    query: ListSessionsQuery,
    response: SessionList
  }),
  getSession: endpoint({
    method: "GET",
    path: "/sessions/:sessionId",
    summary: "One session, with status and activity snapshot",
    tag: "sessions",
    params: SessionParams,
    response: Session
  }),
  sessionEvents: endpoint({
    method: "GET",
    path: "/sessions/:sessionId/events",
    summary: "A page of a session's transcript, in seq order after `afterSeq` (at most 1000 entries)",
    tag: "sessions",
    params: SessionParams,
    query: TranscriptQuery,
    response: TranscriptPage
  }),
  promptSession: endpoint({
    method: "POST",
    path: "/sessions/:sessionId/prompt",
    summary: "Send a follow-up prompt to a session; its answer streams on the feed (its starter only)",
    tag: "sessions",
    params: SessionParams,
    body: PromptRequest,
    response: PromptAccepted,
    status: 202
  }),
  cancelSession: endpoint({
    method: "POST",
    path: "/sessions/:sessionId/cancel",
    summary:
      "Cancel the current answer (`cancelling`), or say that nothing is in flight (`idle`); the session stays open for a follow-up (its starter or a project owner)",
    tag: "sessions",
    params: SessionParams,
    response: Accepted,
    status: 202
  }),
  answerPermission: endpoint({
    method: "POST",
    path: "/sessions/:sessionId/permissions/:requestId",
    summary:
      "Answer the agent's pending permission request (see the snapshot's `permissions`); 409 invalid_state when it no longer waits (its starter only)",
    tag: "sessions",
    params: PermissionParams,
    body: AnswerPermissionRequest,
    response: PermissionAnswered,
    status: 202
  }),
  stopSession: endpoint({
    method: "POST",
    path: "/sessions/:sessionId/stop",
    summary: "Stop a session: its agent is stopped and it takes no more prompts (its starter or a project owner)",
    tag: "sessions",
    params: SessionParams,
    response: Session
  })
}
