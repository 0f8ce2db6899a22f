import { SqlClient } from "@effect/sql"
import { Api, Consume, Domain, type Envelope, type EnvelopeOf, makeId, Publish, registry } from "@sam/bus"
import { StoredText } from "@sam/sql"
import { Effect, Queue, Schedule } from "effect"
import { TaskStatusEvent } from "./TaskActor.js"

const { SessionEvents, Notifications: N } = Domain

/**
 * The notifications reactor: domain events on SAM_EVT become rows in `notifications` and
 * `notification.created` events. Two durable consumers (nats-server 2.9 takes one filter each):
 * task events and session events. Several control planes may share them; every step is idempotent,
 * so order and repeats do not matter: a row is unique per (source event, type, user), inserted with
 * `ON CONFLICT DO NOTHING`, and the stored row is published with a message id derived from its own
 * id, so handling an event twice stores and publishes nothing new.
 *
 * Mapping (recipient: the task's creator; for a session without a task, the project's owners):
 * - `task.status` completed → `task_complete`; failed → `error`; in_progress at step `running` → `progress`
 * - `task.pull-request` (nothing publishes it yet) → `pr_created`
 * - `session.event` `permission-requested` → `needs_input`; the first `plan` of a turn → `progress`
 * - `session.failed` → `error`, unless the session's task carries the failure (it is failed, or
 *   still running and about to fail with it); `session.stopped` → `session_ended`
 */

export const TASK_CONSUMER = "notifications-tasks"
export const SESSION_CONSUMER = "notifications-sessions"

/** What a source event asks for, before its recipients are known. */
interface Draft {
  readonly type: Api.NotificationType
  readonly title: string
  readonly body: string | null
  /** with type and user, what makes it unique: the source event's id, or a coarser key to say it once */
  readonly sourceEventId: string
}

interface Context {
  readonly projectId: string
  readonly taskId: string | null
  readonly sessionId: string | null
  readonly recipients: ReadonlyArray<string>
}

type Row = Api.NotificationRow

/**
 * Display text, at most `max` characters. A NUL (agent output may have one) cannot be stored in
 * `text`: it is shown as U+FFFD here; the transcript keeps the event as it was.
 */
const clip = (raw: string, max = 500) => {
  const text = raw.replaceAll("\u0000", "\uFFFD")
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`
}
/** A prompt in one line: its first non-empty line, clipped. */
const summary = (stored: string) => {
  const prompt = StoredText.visible(StoredText.decode(stored))
  return clip(prompt.split("\n").find((line) => line.trim() !== "") ?? prompt, 120)
}

const taskEvents = registry(TaskStatusEvent, N.PullRequestOpened)
type TaskEvent = EnvelopeOf<(typeof taskEvents.defs)[number]> & Envelope
type SessionEvent = EnvelopeOf<(typeof SessionEvents.sessionEvents.defs)[number]> & Envelope

interface TaskFacts {
  readonly prompt: string
  readonly status: string | null
}

/**
 * The notification a task event makes, from the task's prompt; none for the steps on the way, which are
 * then acknowledged without reading the task.
 */
const taskDraft = (event: TaskEvent): ((prompt: string) => Draft) | undefined => {
  const source = event.id
  if (event.type === "task.pull-request") {
    return () => ({ type: "pr_created", title: "Pull request opened", body: event.body.url, sourceEventId: source })
  }
  const b = event.body
  switch (b.status) {
    case "completed":
      return (prompt) => ({
        type: "task_complete",
        title: "Task completed",
        body: `${summary(prompt)}${b.branch === null ? "" : ` (branch ${b.branch})`}`,
        sourceEventId: source
      })
    case "failed":
      return () => ({
        type: "error",
        title: "Task failed",
        body: clip(`${b.errorReason ?? "no reason given"}${b.errorStep === null ? "" : ` (at ${b.errorStep})`}`),
        sourceEventId: source
      })
    case "in_progress":
      return b.step === "running"
        ? (prompt) => ({ type: "progress", title: "Task is running", body: summary(prompt), sourceEventId: source })
        : undefined
    default:
      return undefined
  }
}

const sessionDraft = (event: SessionEvent, task: TaskFacts | null): Draft | undefined => {
  switch (event.type) {
    case "session.event": {
      const e = event.body.event
      if (e.type === "permission-requested") {
        const what = e.title !== null && e.title !== "" ? e.title : "a tool call"
        const options = e.options.map((o) => `${o.optionId} (${o.name})`).join(", ")
        return {
          type: "needs_input",
          title: "The agent needs your input",
          // What to answer and how: POST /sessions/:sessionId/permissions/:requestId {optionId} (ADR 0018).
          body: clip(`Permission requested: ${what}. Request ${e.requestId}; options: ${options}`),
          sourceEventId: event.id
        }
      }
      if (e.type === "plan") {
        const steps = e.entries.map((entry) => entry.content).filter(Boolean)
        return {
          type: "progress",
          title: "The agent made a plan",
          body: steps.length === 0 ? null : clip(steps.join(" · ")),
          // One per turn: later plan updates of the same turn add no notification.
          sourceEventId: `${event.body.sessionId}.plan.${event.body.promptEpoch}`
        }
      }
      return undefined
    }
    case "session.failed":
      // A task that failed, or that will fail with its session, says so itself.
      if (task !== null && task.status !== "completed" && task.status !== "cancelled") return undefined
      return { type: "error", title: "Session failed", body: clip(event.body.reason), sourceEventId: event.id }
    case "session.stopped":
      return {
        type: "session_ended",
        title: "Session ended",
        body: event.body.reason === undefined ? null : clip(event.body.reason),
        sourceEventId: event.id
      }
    default:
      return undefined
  }
}

/**
 * When a notification says its event happened: the event's own time, not when this reactor got to it. Its two
 * consumers (task and session events) each keep their own pace, so a task's end could be listed before the
 * permission request that came first. A time later than now (another machine's clock) is now.
 */
const happenedAt = (source: Envelope) => {
  const at = Date.parse(source.at)
  return new Date(Number.isFinite(at) ? Math.min(at, Date.now()) : Date.now()).toISOString()
}

/** Store the draft for every recipient (once), dated by its event, and publish each stored row. */
const notify = (source: Envelope, context: Context, draft: Draft) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const at = happenedAt(source)
    for (const userId of context.recipients) {
      yield* sql`
        INSERT INTO notifications
          (id, user_id, project_id, task_id, session_id, type, priority, title, body, source_event_id, created_at)
        VALUES (${makeId("ntf")}, ${userId}, ${context.projectId}, ${context.taskId}, ${context.sessionId},
          ${draft.type}, ${Api.PRIORITY_TYPES.has(draft.type)}, ${draft.title}, ${draft.body}, ${draft.sourceEventId},
          ${at}::timestamptz)
        ON CONFLICT (source_event_id, type, user_id) DO NOTHING`
      const rows = yield* sql<Row>`
        SELECT id, user_id, project_id, task_id, session_id, type, priority, title, body, created_at, read_at
        FROM notifications
        WHERE source_event_id = ${draft.sourceEventId} AND type = ${draft.type} AND user_id = ${userId}`
      const row = rows[0]
      if (row === undefined) continue
      yield* Publish.publish(
        N.notificationSubject(row.projectId, row.id),
        N.NotificationCreated.make(
          { notification: Api.fromRow(row) },
          {
            id: N.notificationMessageId(row.id),
            at: row.createdAt,
            causationId: source.id,
            ...(source.correlationId === undefined ? {} : { correlationId: source.correlationId })
          }
        )
      )
    }
    return Consume.Outcome.Ack()
  })

const handleTask = (delivery: Consume.Delivery<TaskEvent>) =>
  Effect.gen(function* () {
    const event = delivery.envelope
    const draft = taskDraft(event)
    if (draft === undefined) return Consume.Outcome.Ack()
    const sql = yield* SqlClient.SqlClient
    const tasks = yield* sql<{ projectId: string; createdBy: string; prompt: string }>`
      SELECT project_id, created_by, prompt FROM tasks WHERE id = ${event.body.taskId}`
    const task = tasks[0]
    if (task === undefined) return Consume.Outcome.Ack()
    const sessionId = event.type === "task.status" ? event.body.sessionId : null
    return yield* notify(
      event,
      { projectId: task.projectId, taskId: event.body.taskId, sessionId, recipients: [task.createdBy] },
      draft(task.prompt)
    )
  })

/** The agent's events that may notify: a permission request, a plan. */
const notifyingAgentEvent = (type: string) => type === "permission-requested" || type === "plan"

/** Session events that can never notify are acknowledged without a query. */
const mayNotify = (event: SessionEvent) =>
  event.type === "session.failed" ||
  event.type === "session.stopped" ||
  (event.type === "session.event" && notifyingAgentEvent(event.body.event.type))

/** Whether a delivery holds anything that may notify: most hold only the agent's output, acknowledged as they come. */
const mayNotifyAny = (event: SessionEvent) =>
  event.type === "session.event-batch"
    ? event.body.entries.some((entry) => notifyingAgentEvent(entry.event.type))
    : mayNotify(event)

/**
 * A `session.event-batch` is its entries, each as the `session.event` it stands for (with an id of its own,
 * stable across redeliveries, for the notification it may cause).
 */
const entriesOf = (event: SessionEvent): ReadonlyArray<SessionEvent> =>
  event.type === "session.event-batch"
    ? event.body.entries.map((entry) => ({
        ...event,
        id: `${event.id}_${entry.seq}` as typeof event.id,
        type: "session.event" as const,
        body: { sessionId: event.body.sessionId, ...entry }
      }))
    : [event]

const handleSession = (delivery: Consume.Delivery<SessionEvent>) =>
  Effect.gen(function* () {
    for (const event of entriesOf(delivery.envelope)) {
      const outcome = yield* handleSessionEvent(event)
      if (outcome._tag !== "Ack") return outcome
    }
    return Consume.Outcome.Ack()
  })

const handleSessionEvent = (event: SessionEvent) =>
  Effect.gen(function* () {
    if (!mayNotify(event)) return Consume.Outcome.Ack()
    const sql = yield* SqlClient.SqlClient
    const sessions = yield* sql<{
      projectId: string
      taskId: string | null
      createdBy: string | null
      prompt: string | null
      status: string | null
      pendingPermissions: string
    }>`
      SELECT s.project_id, s.task_id, t.created_by, t.prompt, t.status, s.pending_permissions::text AS pending_permissions
      FROM sessions s LEFT JOIN tasks t ON t.id = s.task_id WHERE s.id = ${event.body.sessionId}`
    const session = sessions[0]
    if (session === undefined) return Consume.Outcome.Ack()
    // A request the project's policy answered at once (or a member already did) needs nobody's input.
    if (event.type === "session.event" && event.body.event.type === "permission-requested") {
      const pending = JSON.parse(session.pendingPermissions) as ReadonlyArray<{ readonly requestId: string }>
      if (!pending.some((p) => p.requestId === event.body.event.requestId)) return Consume.Outcome.Ack()
    }
    const task = session.createdBy === null ? null : { prompt: session.prompt ?? "", status: session.status }
    const draft = sessionDraft(event, task)
    if (draft === undefined) return Consume.Outcome.Ack()
    const recipients =
      session.createdBy !== null
        ? [session.createdBy]
        : (yield* sql<{ userId: string }>`
            SELECT user_id FROM project_members WHERE project_id = ${session.projectId} AND role = 'owner'`).map(
            (m) => m.userId
          )
    return yield* notify(
      event,
      { projectId: session.projectId, taskId: session.taskId, sessionId: event.body.sessionId, recipients },
      draft
    )
  })

/** New event types on the same subjects are not ours to notify about: no warning for those. */
const onMalformed = (report: Consume.MalformedDelivery) =>
  report.malformed.reason === "unknown-type"
    ? Effect.void
    : Effect.logWarning(`notifications: terminated malformed ${report.subject}: ${report.malformed.message}`)

/** Run the reactor until interrupted; a consumer that stops (connection trouble) is reopened. */
export const run = Effect.fn("Notifications.run")(function* () {
  yield* Consume.ensureConsumer("SAM_EVT", {
    durable: TASK_CONSUMER,
    filterSubject: "sam.evt.*.task.*.task.*",
    startAt: "new"
  })
  yield* Consume.ensureConsumer("SAM_EVT", {
    durable: SESSION_CONSUMER,
    filterSubject: "sam.evt.*.session.*.session.*",
    startAt: "new"
  })
  const tasks = Consume.run(
    Consume.consume<typeof taskEvents.defs, TaskEvent>("SAM_EVT", TASK_CONSUMER, taskEvents, { onMalformed }),
    handleTask
  )
  // Session events: what cannot notify is acknowledged from the consumer's callback (issue 12: every event the
  // agents write comes here); the rest is handled one at a time, as a consumer's stream would.
  const sessions = Effect.gen(function* () {
    const mayNotifyQueue = yield* Queue.unbounded<Consume.Delivery<SessionEvent>>()
    yield* Effect.forkScoped(
      Queue.take(mayNotifyQueue).pipe(Effect.flatMap(Consume.handleOne(handleSession)), Effect.forever)
    )
    return yield* Consume.each<SessionEvent>(
      "SAM_EVT",
      SESSION_CONSUMER,
      SessionEvents.sessionEvents,
      (delivery) => {
        if (mayNotifyAny(delivery.envelope)) mayNotifyQueue.unsafeOffer(delivery)
        else delivery.msg.ack()
      },
      { onMalformed }
    )
  }).pipe(Effect.scoped)
  const keepGoing = <E, R>(what: string, work: Effect.Effect<void, E, R>) =>
    work.pipe(
      Effect.tapErrorCause((cause) => Effect.logWarning(`notifications: ${what} consumer stopped; reopening`, cause)),
      Effect.retry(Schedule.exponential("200 millis").pipe(Schedule.union(Schedule.spaced("10 seconds"))))
    )
  yield* Effect.all([keepGoing("task", tasks), keepGoing("session", sessions)], {
    concurrency: "unbounded",
    discard: true
  })
})
