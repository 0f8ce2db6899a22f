import { SqlClient } from "@effect/sql"
import { Actors, ControlPlane } from "@sam/actors"
import { Domain, makeId, Nats, ProjectId, registry, SessionId } from "@sam/bus"
import { Deferred, Effect } from "effect"
import { z } from "zod"
import { StackError } from "./StackError.js"

const { ControlProtocol: C, SessionEvents: E } = Domain

const printable = registry(
  ControlPlane.TaskStatusEvent,
  E.SessionEventAppended,
  E.SessionActivityChanged,
  E.SessionFailed,
  E.SessionStopped
)
type Printable = Extract<ReturnType<typeof printable.decode>, { _tag: "Ok" }>["envelope"]

const out = (text: string) => Effect.sync(() => process.stdout.write(text))

/** How one session event reads in a terminal. */
const render = (event: Record<string, unknown> & { type: string }): string => {
  switch (event.type) {
    case "text":
      return String(event.text)
    case "thought":
      return `\x1b[2m${String(event.text)}\x1b[0m`
    case "plan":
      return `\n[plan] ${(event.entries as Array<{ content: string; status: string }>).map((e) => `${e.status === "completed" ? "✓" : "·"} ${e.content}`).join(" | ")}\n`
    case "tool-call":
      return `\n$ ${String(event.title)}\n`
    case "tool-call-update": {
      const content =
        (event.content as Array<{ type: string; content?: { type: string; text?: string } }> | undefined) ?? []
      return content.map((c) => c.content?.text ?? "").join("")
    }
    case "turn-ended":
      return `\n· turn ended (${String(event.stopReason)})\n`
    case "cancelled":
      return "\n· cancelled\n"
    case "crashed":
      return `\n✗ the agent crashed (exit ${String(event.exitCode)})\n`
    case "failed":
      return `\n✗ ${String(event.reason)}\n`
    default:
      return ""
  }
}

/** What to do with an event: print it and go on, skip it, or print it and stop (well or not). */
export type WatchUntil = (envelope: Printable) => "continue" | "skip" | "done" | "failed"

/**
 * Print a project's live events (subscribed before `start` runs, so nothing is missed) until
 * `until` says so. Returns whether it ended well.
 */
export const watch = <R>(projectFilter: string, start: Effect.Effect<void, unknown, R>, until: WatchUntil) =>
  Effect.gen(function* () {
    const { nc } = yield* Nats
    const result = yield* Deferred.make<boolean>()
    const sub = nc.subscribe(`sam.evt.${projectFilter}.>`, {
      callback: (_, msg) => {
        const decoded = printable.decode(msg.data)
        if (decoded._tag !== "Ok") return
        const envelope = decoded.envelope
        const verdict = until(envelope)
        if (verdict === "skip") return
        if (envelope.type === "session.event") process.stdout.write(render(envelope.body.event))
        if (envelope.type === "task.status") {
          const b = envelope.body
          process.stdout.write(
            `\n▸ task ${b.status}${b.step ? ` · ${b.step}` : ""}${b.errorReason ? ` · ${b.errorReason}` : ""}${b.branch ? ` · branch ${b.branch}` : ""}\n`
          )
        }
        if (verdict !== "continue") Deferred.unsafeDone(result, Effect.succeed(verdict === "done"))
      }
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => sub.unsubscribe()))
    yield* start
    return yield* Deferred.await(result)
  }).pipe(Effect.scoped)

const TaskArgs = z.object({
  project: ProjectId,
  prompt: z.string().min(1),
  agent: Domain.NodeProtocol.AgentKind.default("demo"),
  mode: Domain.NodeProtocol.TaskMode.default("task")
})

/** `sam task create`: submit a task and print what happens until it ends (or waits for a follow-up). */
export const createTask = (input: Record<string, string | undefined>, userId: string) =>
  Effect.gen(function* () {
    const args = TaskArgs.safeParse(input)
    if (!args.success) {
      return yield* new StackError({
        step: "task",
        message: `${args.error.issues.map((i) => `--${i.path.join(".")}: ${i.message}`).join("; ")}\nusage: sam task create --project proj_… --prompt "…" [--agent demo] [--mode task|conversation]`
      })
    }
    const sql = yield* SqlClient.SqlClient
    const found = yield* sql`SELECT 1 FROM projects WHERE id = ${args.data.project}`
    if (found.length === 0)
      return yield* new StackError({ step: "task", message: `no project ${args.data.project} (see: sam project list)` })
    const taskId = makeId("task")
    let sessionId: string | undefined
    const submit = Actors.ask(
      ControlPlane.TaskRef,
      taskId,
      C.TaskSubmit.make({
        taskId,
        projectId: args.data.project,
        userId: userId as never,
        prompt: args.data.prompt,
        agent: args.data.agent,
        mode: args.data.mode
      })
    ).pipe(Effect.zipRight(out(`task ${taskId} submitted\n`)), Effect.orDie)
    const ok = yield* watch(args.data.project, submit, (e) => {
      if (e.type !== "task.status") return e.body.sessionId === sessionId ? "continue" : "skip"
      if (e.body.taskId !== taskId) return "skip"
      if (e.body.sessionId) sessionId = e.body.sessionId
      if (e.body.status === "completed") return "done"
      if (e.body.status === "failed" || e.body.status === "cancelled") return "failed"
      if (e.body.step === "awaiting_followup") return "done"
      return "continue"
    })
    if (sessionId !== undefined)
      yield* out(`session ${sessionId}: follow up with ./sam session prompt ${sessionId} "…"\n`)
    if (!ok) return yield* new StackError({ step: "task", message: `task ${taskId} did not complete` })
  })

const sessionProject = (sessionId: string) =>
  Effect.gen(function* () {
    const parsed = SessionId.safeParse(sessionId)
    if (!parsed.success) return yield* new StackError({ step: "session", message: `not a session id: ${sessionId}` })
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{
      projectId: string
      status: string
    }>`SELECT project_id, status FROM sessions WHERE id = ${sessionId}`
    if (rows[0] === undefined) return yield* new StackError({ step: "session", message: `no session ${sessionId}` })
    return rows[0]
  })

const turnEnds =
  (sessionId: string): WatchUntil =>
  (e) => {
    if (e.type === "task.status" || e.body.sessionId !== sessionId) return "skip"
    if (e.type === "session.failed") return "failed"
    if (e.type === "session.event" && e.body.sessionId === sessionId && e.body.event.type === "turn-ended")
      return "done"
    return "continue"
  }

/** `sam session prompt <id> "…"`: a follow-up; prints the turn. */
export const promptSession = (sessionId: string, prompt: string) =>
  Effect.gen(function* () {
    const { projectId } = yield* sessionProject(sessionId)
    const ask = Actors.ask(
      ControlPlane.SessionRef,
      sessionId,
      C.SessionPromptCommand.make({ sessionId: sessionId as never, prompt })
    ).pipe(
      Effect.flatMap((answer) => {
        const reply = (answer as { reply?: { ok?: boolean; message?: string } }).reply
        return reply?.ok === false
          ? Effect.die(new StackError({ step: "session", message: reply.message ?? "refused" }))
          : Effect.void
      }),
      Effect.orDie
    )
    const ok = yield* watch(projectId, ask, turnEnds(sessionId))
    if (!ok) return yield* new StackError({ step: "session", message: `session ${sessionId} failed` })
  })

/** `sam session cancel <id>`. */
export const cancelSession = (sessionId: string) =>
  Effect.gen(function* () {
    yield* sessionProject(sessionId)
    yield* Actors.send(
      ControlPlane.SessionRef,
      sessionId,
      C.SessionCancelCommand.make({ sessionId: sessionId as never })
    )
    yield* out(`cancel sent to ${sessionId}\n`)
  })

/** `sam session watch <id>`: the transcript so far from the ledger, then live events until Ctrl-C. */
export const watchSession = (sessionId: string) =>
  Effect.gen(function* () {
    const { projectId } = yield* sessionProject(sessionId)
    const sql = yield* SqlClient.SqlClient
    let last = 0
    const history = sql<{ seq: string; payload: Record<string, unknown> & { type: string } }>`
      SELECT seq, payload FROM session_events WHERE session_id = ${sessionId} ORDER BY seq`.pipe(
      Effect.tap((rows) =>
        Effect.forEach(rows, (row) => {
          last = Number(row.seq)
          return out(render(row.payload))
        })
      ),
      Effect.asVoid,
      Effect.orDie
    )
    yield* watch(projectId, history, (e) => {
      if (e.type === "task.status" || e.body.sessionId !== sessionId) return "skip"
      if (e.type === "session.event" && e.body.seq <= last) return "skip"
      return e.type === "session.failed" ? "failed" : "continue"
    })
  })
