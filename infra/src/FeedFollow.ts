import * as Api from "@sam/bus/api"
import { FeedClient, type FeedSubscription, wsFactory } from "@sam/gateway/client"
import { Duration, Effect, Option, Queue } from "effect"
import WebSocket from "ws"
import type { z } from "zod"
import { out } from "./ApiCli.js"
import type * as LocalClient from "./LocalClient.js"
import { StackError } from "./StackError.js"

/**
 * Following a task or a session on the gateway's live feed, for the CLI: what the agent does, as
 * terminal text, until the task ends or the turn does.
 */

const T = Api.TaskEndpoints

/** How one session event reads in a terminal; `sessionId` names the session in what to type to answer. */
export const render = (event: Api.SessionEventBody, sessionId = "sess_…"): string => {
  switch (event.type) {
    case "permission-requested": {
      // without this a task that waits for an answer looked like one that hangs
      const options = [...event.options.map((o) => o.optionId), "cancelled"].join("|")
      return `\n? the agent asks: ${event.title ?? "may it run a tool?"}\n  answer: ./sam session answer ${sessionId} ${event.requestId} ${options}\n`
    }
    case "permission-answered":
      return `· answered ${event.optionName ?? event.outcome}${event.by === "user" ? "" : ` (${event.by})`}\n`
    case "text":
      return event.text
    case "thought":
      return `\x1b[2m${event.text}\x1b[0m`
    case "plan":
      return `\n[plan] ${event.entries.map((e) => `${e.status === "completed" ? "✓" : "·"} ${e.content}`).join(" | ")}\n`
    case "tool-call":
      return `\n$ ${event.title}\n`
    case "tool-call-update":
      // ACP `content` blocks carry a content block; the text ones are what a shell printed
      return event.content
        .map((c) => (c.type === "content" ? (c.content as { readonly text?: unknown } | undefined)?.text : undefined))
        .map((text) => (typeof text === "string" ? text : ""))
        .join("")
    case "turn-ended":
      return `\n· turn ended (${event.stopReason})\n`
    case "turn-failed":
      // the agent answered the prompt with an error (its provider refused, say), or the node refused the prompt
      return `\n✗ the turn failed: ${event.message ?? event.reason ?? "no reason given"}\n`
    case "restarted":
      return `\n· the agent restarted after a ${event.reason}${event.contextLost ? " (its context is lost)" : ""}\n`
    case "stopped":
      return "\n· the session stopped\n"
    case "cancelled":
      return "\n· cancelled\n"
    case "crashed":
      return `\n✗ the agent crashed (exit ${String(event.exitCode)})\n`
    case "failed":
      return `\n✗ ${event.reason}\n`
    default:
      return ""
  }
}

/**
 * `render` for one stream of a session's events: text that follows something else than text of its kind (a thought
 * after the agent's message, a message after a thought or a command's output) starts on a line of its own. The
 * chunks of one message, or of one thought, still join.
 */
export const renderer = () => {
  let previous: string | undefined
  let atLineStart = true
  return (event: Api.SessionEventBody, sessionId?: string): string => {
    const rendered = render(event, sessionId)
    const flowing = event.type === "text" || event.type === "thought"
    const text =
      flowing && previous !== undefined && previous !== event.type && !atLineStart ? `\n${rendered}` : rendered
    previous = event.type
    if (text.length > 0) atLineStart = text.endsWith("\n")
    return text
  }
}

export interface TaskState {
  readonly status: string
  readonly step: string | null
  readonly errorReason: string | null
  readonly branch: string | null
}
/** A task that has ended: completed, failed or cancelled. */
export const isEnded = (status: string) => ["completed", "failed", "cancelled"].includes(status)
const ended = (t: TaskState) => isEnded(t.status)
/** A task's status line; the step only while it runs (an ended task keeps the step it was in, which no longer holds). */
const statusLine = (t: TaskState) =>
  `\n▸ task ${t.status}${t.step && !ended(t) ? ` · ${t.step}` : ""}${t.errorReason ? ` · ${t.errorReason}` : ""}${t.branch ? ` · branch ${t.branch}` : ""}\n`
export const waiting = (t: TaskState) => !ended(t) && t.step === "awaiting_followup"
export const fromTask = (t: z.output<typeof Api.Task>): TaskState & { readonly sessionId: string | null } => ({
  status: t.status,
  step: t.executionStep,
  errorReason: t.errorReason,
  branch: t.branch,
  sessionId: t.sessionId
})

type ApiClient = LocalClient.ApiClient
type Frame = Api.ServerFrame
/** What the feed tells us: a frame, or that it reconnected (project events are not caught up), or that it is gone. */
type Signal =
  | Frame
  | { readonly type: "reconnected" }
  | { readonly type: "gone"; readonly code: number; readonly reason: string }

/** After a task ends, how long to wait for its session's last events (they come by another actor). */
const DRAIN = Duration.seconds(5)
export const TURN_ENDS = new Set(["turn-ended", "turn-failed", "failed", "crashed"])

const refused = (frame: Api.ServerFrameOf<"error">) =>
  Effect.fail(new StackError({ step: frame.code, message: frame.message }))

/** The gateway's feed in this scope, as a queue of signals; subscribes to `subscription` on connecting. */
const openFeed = (api: ApiClient, subscription: FeedSubscription) =>
  Effect.gen(function* () {
    const signals = yield* Queue.unbounded<Signal>()
    let opened = 0
    const feed = yield* Effect.acquireRelease(
      Effect.sync(
        () =>
          new FeedClient({
            baseUrl: api.url,
            token: api.token,
            webSocket: wsFactory(WebSocket),
            ...subscription,
            onFrame: (frame) => Queue.unsafeOffer(signals, frame),
            onStatus: (status) => {
              if (status.state === "open" && opened++ > 0) Queue.unsafeOffer(signals, { type: "reconnected" })
              if (status.state === "closed" && status.reconnecting && opened > 0) {
                process.stderr.write(`\n… the feed connection closed (${status.code}); reconnecting\n`)
              }
              if (status.state === "closed" && !status.reconnecting) {
                Queue.unsafeOffer(signals, { type: "gone", code: status.code, reason: status.reason })
              }
            }
          })
      ),
      (feed) => Effect.sync(() => feed.close())
    )
    const next = Queue.take(signals).pipe(
      Effect.flatMap((signal) => {
        if (signal.type === "gone") {
          const refused = signal.code === 4001 || signal.code === 4401
          return Effect.fail(
            new StackError({
              step: refused ? "unauthenticated" : "feed",
              message: refused
                ? "the gateway refused the token for the feed"
                : `the feed closed (${signal.code} ${signal.reason})`
            })
          )
        }
        return Effect.succeed(signal)
      })
    )
    /** Wait until the feed confirms what we asked for (before acting, so no event is missed). */
    const subscribed = Effect.gen(function* () {
      for (;;) {
        const signal = yield* next
        if (signal.type === "error") return yield* refused(signal)
        if (signal.type === "subscribed") return
      }
    })
    return { feed, next, subscribed }
  })

/**
 * Follow a task: its status changes as `▸ task …` lines and its session's events as they happen,
 * until it ends or waits for a follow-up. `start` runs once the feed listens (it submits or
 * retries the task). Returns the task's state then.
 */
export const followTask = (
  api: ApiClient,
  projectId: string,
  start: Effect.Effect<{ readonly id: string }, StackError>,
  /** a session the task had before (a retry): its events are not this run's */
  stale: string | null = null
) =>
  Effect.gen(function* () {
    const { feed, next, subscribed } = yield* openFeed(api, { projects: [projectId] })
    yield* subscribed
    const { id: taskId } = yield* start
    let shown = ""
    let sessionId: string | null = null
    let lastType: string | undefined
    let printed = 0
    let tries = 0
    let finished: TaskState | undefined
    let drainUntil = 0
    /**
     * The line of a task that ended (or waits for a follow-up), held until its session's last events are printed:
     * they come by another actor and often reach the feed after it, and printed first it read as if the agent went
     * on after the task had ended.
     */
    let held: string | undefined
    const show = renderer()
    const apply = (state: TaskState & { readonly sessionId: string | null }) => {
      const line = statusLine(state)
      if (line !== shown && (ended(state) || waiting(state))) held = line
      // Once the agent's output has begun, a step before its end is old news: the task's statuses come by another
      // actor than the session's events and often reach the feed after them ("in_progress · running" below the
      // turn's end read as if the agent ran again).
      else if (line !== shown && lastType === undefined) process.stdout.write(line)
      shown = line
      if (state.sessionId !== null && state.sessionId !== sessionId && state.sessionId !== stale) {
        if (sessionId !== null) feed.unsubscribe({ sessions: [sessionId] })
        sessionId = state.sessionId
        lastType = undefined
        printed = 0
        tries = 0
        feed.subscribe({ sessions: [{ sessionId, afterSeq: 0 }] })
      }
      if (finished === undefined && (ended(state) || waiting(state))) {
        finished = state
        drainUntil = Date.now() + Duration.toMillis(DRAIN)
      }
    }
    // Project events are not caught up after a reconnect: read the task again.
    const refresh = api.call(T.getTask, { params: { taskId } }).pipe(Effect.map((t) => apply(fromTask(t))))
    const release = () => {
      if (held !== undefined) process.stdout.write(held)
      held = undefined
    }
    const done = (state: TaskState) => {
      release()
      return { id: taskId, sessionId, state }
    }
    for (;;) {
      if (finished !== undefined && (sessionId === null || (lastType !== undefined && TURN_ENDS.has(lastType)))) {
        return done(finished)
      }
      const signal =
        finished === undefined
          ? Option.some(yield* next)
          : yield* next.pipe(Effect.timeoutOption(Math.max(0, drainUntil - Date.now())))
      if (Option.isNone(signal)) return done(finished as TaskState)
      const frame = signal.value
      if (frame.type === "reconnected") yield* refresh
      else if (
        frame.type === "event" &&
        frame.kind === "task" &&
        frame.id === taskId &&
        frame.eventType === "task.status"
      ) {
        apply(frame.body as TaskState & { sessionId: string | null })
      } else if (frame.type === "session.event" && frame.sessionId === sessionId) {
        process.stdout.write(show(frame.event, frame.sessionId))
        lastType = frame.event.type
        printed = frame.seq
      } else if (frame.type === "error") {
        // The task names its session a moment before the session actor has recorded it.
        const named = (frame.details as { sessionId?: string } | undefined)?.sessionId
        if (sessionId === null || named !== sessionId || frame.code !== "not_found" || ++tries > 40) {
          release()
          return yield* refused(frame)
        }
        yield* Effect.sleep("250 millis")
        feed.subscribe({ sessions: [{ sessionId, afterSeq: printed }] })
      } else if (frame.type === "event" && frame.id === sessionId && SESSION_ENDS.has(frame.eventType)) {
        lastType = "failed"
      }
    }
  }).pipe(Effect.scoped)

const SESSION_ENDS = new Set(["session.failed", "session.stopped"])

/**
 * Print a session's events after `afterSeq`, live, until `until` says a frame ends it (or forever); returns that
 * frame. `start` runs once the feed listens.
 */
export const followSession = (
  api: ApiClient,
  sessionId: string,
  afterSeq: number,
  start: Effect.Effect<void, StackError>,
  until: (frame: Frame) => boolean
) =>
  Effect.gen(function* () {
    const { next, subscribed } = yield* openFeed(api, { sessions: [{ sessionId, afterSeq }] })
    yield* subscribed
    yield* start
    const show = renderer()
    for (;;) {
      const frame = yield* next
      if (frame.type === "error") return yield* refused(frame)
      if (frame.type === "session.event" && frame.sessionId === sessionId)
        process.stdout.write(show(frame.event, sessionId))
      if (frame.type === "event" && frame.id === sessionId && SESSION_ENDS.has(frame.eventType)) {
        const reason = (frame.body as { reason?: string }).reason
        if (frame.eventType === "session.stopped") {
          yield* out(`\n· session stopped${reason ? `: ${reason}` : ""}\n`)
          return frame
        }
        return yield* new StackError({ step: "session", message: `session ${sessionId} failed: ${reason ?? "?"}` })
      }
      if (frame.type !== "reconnected" && until(frame)) return frame
    }
  }).pipe(Effect.scoped)
