import { z } from "zod"
import { SessionEventBody } from "../domain/SessionEventBody.js"
import { SessionSnapshot } from "../domain/SessionState.js"
import { ProjectId, SessionId, UserId } from "../Ids.js"
import { ApiErrorBody } from "./ApiError.js"

/**
 * The live feed: one WebSocket per client at `GET /api/v1/feed` (authenticated before the upgrade
 * by `Authorization: Bearer …`, the `sam_session` cookie, or `?access_token=…` for browsers, which
 * cannot set headers on a WebSocket; a refused attempt is an HTTP 401 with an `ApiErrorBody`).
 * Every frame is one JSON text message with a `type`.
 *
 * Server → client, in this order per connection:
 * - `hello` first: the connection's id, the user, and `heartbeatMs`.
 * - `subscribed` answers each `subscribe` / `unsubscribe` with everything now subscribed; refused
 *   items get an `error` frame (`forbidden`, `not_found`) naming them in `details`, and nothing else.
 * - Per subscribed session, exactly once and in order: `snapshot` (the KV snapshot, null if none),
 *   every event with `seq > afterSeq` (from the transcript), `caught-up` (the last seq sent), then
 *   live events. Whatever the timing, a client sees each seq once, with no gaps: the gateway buffers
 *   live events while it reads, drops repeats, and fills gaps from the transcript. Subscribing again
 *   to the same session starts over from the new `afterSeq`. Events read from the transcript (the
 *   catch-up, a gap filled) come in runs: a `session.events` frame lists their entries in seq order,
 *   about 64 KiB at most, since a browser pays per message (10,000 `session.event` frames took
 *   Chromium 2.7 s to take in); a run of one is a `session.event` frame, as is each live event.
 *   `FeedClient` hands its consumer each entry of a `session.events` frame as the `session.event`
 *   frame it stands for.
 * - `event`: any other domain event of a subscribed project (task, workspace, session lifecycle),
 *   also of a subscribed session; node events to users who can see the node (its owner, members of
 *   projects with a workspace on it); notifications to their user. Each such event at most once
 *   per connection in the common case; a repeat published long after the first may be seen twice.
 * - `ping` every `heartbeatMs`; answer `pong`. `pong` answers a client `ping`.
 *
 * Client → server: `subscribe`, `unsubscribe`, `ping`, `pong`. Any frame counts as liveness: a
 * connection that sends nothing for two heartbeats is closed (4000).
 *
 * Failure modes: a frame that is not JSON or not a known valid frame gets an `error` frame with
 * code `bad_frame` and the zod issue paths, and changes nothing; more than 20 such frames close the
 * connection (1008). Binary frames close it (1003), frames over 64 KiB too (1009). A client that
 * does not read fast enough is closed (4008, with the bytes buffered in the reason) and should
 * reconnect with its last seq per session; so should one closed for any other reason except 4001
 * (its credential was revoked or has expired: closed within about a second of the revocation) and
 * 4009 (the user has too many feed connections open). The WebSocket server refuses a message over
 * 64 KiB as soon as its header announces it, without reading it.
 */

/** A client-chosen id echoed in the `subscribed` or `error` frame that answers the request. */
export const FeedRequestId = z.string().min(1).max(64)

export const SessionCursor = z.object({
  sessionId: SessionId,
  /** the last seq the client has; 0 for the whole transcript */
  afterSeq: z.number().int().nonnegative()
})
export type SessionCursor = z.infer<typeof SessionCursor>

export const SubscribeFrame = z.object({
  type: z.literal("subscribe"),
  id: FeedRequestId.optional(),
  projects: z.array(ProjectId).max(100).optional(),
  sessions: z.array(SessionCursor).max(100).optional()
})
export const UnsubscribeFrame = z.object({
  type: z.literal("unsubscribe"),
  id: FeedRequestId.optional(),
  projects: z.array(ProjectId).max(100).optional(),
  sessions: z.array(SessionId).max(100).optional()
})
export const PingFrame = z.object({ type: z.literal("ping") })
export const PongFrame = z.object({ type: z.literal("pong") })

export const ClientFrame = z.discriminatedUnion("type", [SubscribeFrame, UnsubscribeFrame, PingFrame, PongFrame])
export type ClientFrame = z.infer<typeof ClientFrame>

export const HelloFrame = z.object({
  type: z.literal("hello"),
  connectionId: z.string(),
  userId: UserId,
  heartbeatMs: z.number().int().positive()
})
export const SubscribedFrame = z.object({
  type: z.literal("subscribed"),
  id: FeedRequestId.optional(),
  projects: z.array(ProjectId),
  sessions: z.array(SessionId)
})
export const SnapshotFrame = z.object({
  type: z.literal("snapshot"),
  sessionId: SessionId,
  snapshot: SessionSnapshot.nullable()
})
/** One event of a session's transcript, as a `session.event` frame carries it and a `session.events` frame lists it. */
export const SessionEventEntry = z.object({
  seq: z.number().int().positive(),
  promptEpoch: z.number().int().nonnegative(),
  /** the agent's event as the transcript stores it: `{ type: "text" | "plan" | …, … }` */
  event: SessionEventBody,
  /** when it was recorded (the transcript's time when caught up, the event's when live; close, not equal) */
  at: z.string(),
  /** the id of the request this event answers (its `X-Request-Id`): one message followed end to end */
  correlationId: z.string().optional()
})
export type SessionEventEntry = z.infer<typeof SessionEventEntry>
export const SessionEventFrame = SessionEventEntry.extend({
  type: z.literal("session.event"),
  sessionId: SessionId
})
/** A run of one session's transcript entries in one frame, in seq order. */
export const SessionEventsFrame = z.object({
  type: z.literal("session.events"),
  sessionId: SessionId,
  events: z.array(SessionEventEntry).min(1)
})
export const CaughtUpFrame = z.object({
  type: z.literal("caught-up"),
  sessionId: SessionId,
  lastSeq: z.number().int().nonnegative()
})
export const EventFrame = z.object({
  type: z.literal("event"),
  /** null for events outside any project (nodes) */
  projectId: ProjectId.nullable(),
  /** the entity kind and id the event is about: `task`/`task_…`, `node`/`node_…` */
  kind: z.string(),
  id: z.string(),
  /** the domain event type: `task.status`, `workspace.status`, `session.activity`, `notification.created`… */
  eventType: z.string(),
  body: z.unknown(),
  at: z.string(),
  /** the id of the request that caused this event (its `X-Request-Id`), when one did */
  correlationId: z.string().optional()
})
export const FeedErrorCode = z.enum(["bad_frame", "forbidden", "not_found", "too_many_subscriptions", "internal"])
export type FeedErrorCode = z.infer<typeof FeedErrorCode>
export const ErrorFrame = ApiErrorBody.extend({
  type: z.literal("error"),
  id: FeedRequestId.optional(),
  code: FeedErrorCode
})
export const ServerPingFrame = z.object({ type: z.literal("ping") })
export const ServerPongFrame = z.object({ type: z.literal("pong") })

export const ServerFrame = z.discriminatedUnion("type", [
  HelloFrame,
  SubscribedFrame,
  SnapshotFrame,
  SessionEventFrame,
  SessionEventsFrame,
  CaughtUpFrame,
  EventFrame,
  ErrorFrame,
  ServerPingFrame,
  ServerPongFrame
])
export type ServerFrame = z.infer<typeof ServerFrame>
export type ServerFrameOf<T extends ServerFrame["type"]> = Extract<ServerFrame, { type: T }>

/** WebSocket close codes the gateway uses (RFC 6455 ones, and 4000–4999 of ours). */
export const FeedClose = {
  /** the server is shutting down: reconnect */
  goingAway: 1001,
  /** a binary frame */
  unsupportedData: 1003,
  /** too many bad frames */
  policyViolation: 1008,
  /** a frame over `MAX_CLIENT_FRAME_BYTES` */
  messageTooBig: 1009,
  /** nothing received for two heartbeats */
  noPong: 4000,
  /** the credential was revoked or expired: sign in again, do not just reconnect */
  unauthenticated: 4001,
  /** the client fell behind: reconnect with the last seq per session */
  tooSlow: 4008,
  /**
   * the user already has the most feed connections one gateway allows (`SAM_FEED_MAX_CONNECTIONS_PER_USER`,
   * 32): close another one of them first; reconnecting at once will be refused the same way
   */
  tooManyConnections: 4009
} as const

export const MAX_CLIENT_FRAME_BYTES = 65_536
export const MAX_BAD_FRAMES = 20
