import * as Api from "@sam/bus/api"
import { Duration, Effect, Option } from "effect"
import { z } from "zod"
import { out, parseArgs, projectIdOf, table, usage } from "./ApiCli.js"
import { followSession, followTask, isEnded, type TaskState, TURN_ENDS, waiting } from "./FeedFollow.js"
import * as LocalClient from "./LocalClient.js"
import { StackError } from "./StackError.js"

const T = Api.TaskEndpoints
const S = Api.SessionEndpoints

const TaskArgs = z.object({
  project: z.string(),
  prompt: z.string().min(1),
  /** default: the profile's, else the demo agent (the gateway decides) */
  agent: Api.CreateTaskRequest.shape.agent,
  mode: Api.CreateTaskRequest.shape.mode,
  profile: z.string().optional()
})
const CREATE_USAGE =
  'sam task create --project P (its id or name) --prompt "…" [--agent demo|claude-code|codex|gemini|opencode] [--profile prof_…] [--mode task|conversation]'

/** `sam task create`: submit, then print what happens until it ends (or waits for a follow-up). */
const createTask = (flags: Record<string, string | undefined>) =>
  Effect.gen(function* () {
    const args = TaskArgs.safeParse(flags)
    if (!args.success) {
      return yield* new StackError({
        step: "task",
        message: `${args.error.issues.map((i) => `--${i.path.join(".")}: ${i.message}`).join("; ")}\nusage: ${CREATE_USAGE}`
      })
    }
    const api = yield* LocalClient.api()
    const { prompt, agent, mode, profile } = args.data
    const project = yield* projectIdOf(api, args.data.project)
    // A clear `not_found` / `forbidden` before the feed is opened for it.
    yield* api.call(Api.ProjectEndpoints.getProject, { params: { projectId: project } })
    const submit = api
      .call(T.createTask, {
        params: { projectId: project },
        body: {
          prompt,
          ...(agent === undefined ? {} : { agent }),
          ...(mode === undefined ? {} : { mode }),
          ...(profile === undefined ? {} : { profileId: profile })
        }
      })
      .pipe(Effect.tap((created) => out(`task ${created.id} submitted\n`)))
    yield* report(yield* followTask(api, project, submit))
  })

/**
 * The end of a followed task: how to follow up when it awaits one (a completed task's session sleeps and refuses a
 * prompt), and a failure unless it completed or awaits one.
 */
const report = (task: { readonly id: string; readonly sessionId: string | null; readonly state: TaskState }) =>
  Effect.gen(function* () {
    if (task.sessionId !== null && waiting(task.state)) {
      yield* out(`session ${task.sessionId}: follow up with ./sam session prompt ${task.sessionId} "…"\n`)
    }
    if (!waiting(task.state) && task.state.status !== "completed") {
      const why = task.state.errorReason === null ? "" : `: ${task.state.errorReason}`
      return yield* new StackError({ step: "task", message: `task ${task.id} ${task.state.status}${why}` })
    }
  })

/** The step a task is at while it runs; an ended task keeps the step it was in, which no longer holds (its error says where it failed). */
const stepOf = (t: { readonly status: string; readonly executionStep: string | null }) =>
  isEnded(t.status) ? null : t.executionStep

const day = (iso: string | null) => (iso === null ? null : iso.slice(0, 19).replace("T", " "))

/** `sam task …` */
export const task = (args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const { flags, words } = parseArgs(args)
    const [verb, id] = words
    if (verb === "create") return yield* createTask(flags)
    const api = yield* LocalClient.api()
    switch (verb) {
      case "list": {
        const projects =
          flags.project === undefined
            ? (yield* api.call(Api.ProjectEndpoints.listProjects)).projects.map((p) => p.id)
            : [yield* projectIdOf(api, flags.project)]
        const rows: Array<Array<string | null>> = [["ID", "PROJECT", "STATUS", "STEP", "MODE", "CREATED", "PROMPT"]]
        for (const projectId of projects) {
          const { tasks } = yield* api.call(T.listTasks, {
            params: { projectId },
            query: flags.status === undefined ? {} : { status: flags.status }
          })
          for (const t of tasks) {
            const firstLine = t.prompt.split("\n")[0] ?? ""
            rows.push([t.id, t.projectId, t.status, stepOf(t), t.mode, day(t.createdAt), firstLine.slice(0, 60)])
          }
        }
        return yield* out(rows.length === 1 ? "no tasks\n" : `${table(rows)}\n`)
      }
      case "get": {
        if (id === undefined) return yield* usage("task", "sam task get task_…")
        const t = yield* api.call(T.getTask, { params: { taskId: id } })
        return yield* out(
          `${table([
            ["id", t.id],
            ["project", t.projectId],
            ["status", t.status],
            ["step", stepOf(t)],
            ["error", t.errorReason === null ? null : `${t.errorStep ?? "?"}: ${t.errorReason}`],
            ["agent · mode", `${t.agent} · ${t.mode}`],
            ["node", t.nodeId],
            ["workspace", t.workspaceId],
            ["session", t.sessionId],
            ["branch", t.branch === null ? null : `${t.branch}${t.commitSha ? ` @ ${t.commitSha.slice(0, 12)}` : ""}`],
            ["pull request", t.prUrl],
            ["created", day(t.createdAt)],
            ["finished", day(t.finishedAt)],
            ["prompt", t.prompt.split("\n").join(" ⏎ ")]
          ])}\n\nhistory:\n${table(t.statusEvents.map((e) => [day(e.at), `${e.from ?? "·"} → ${e.to}`, e.actor, e.reason]))}\n`
        )
      }
      case "cancel": {
        if (id === undefined) return yield* usage("task", "sam task cancel task_… [--reason R]")
        const t = yield* api.call(T.cancelTask, {
          params: { taskId: id },
          body: flags.reason === undefined ? {} : { reason: flags.reason }
        })
        return yield* out(`task ${t.id} ${t.status}\n`)
      }
      case "retry": {
        if (id === undefined) return yield* usage("task", "sam task retry task_…")
        const before = yield* api.call(T.getTask, { params: { taskId: id } })
        const retry = api
          .call(T.retryTask, { params: { taskId: id } })
          .pipe(Effect.tap((t) => out(`task ${t.id} ${t.status} again\n`)))
        return yield* report(yield* followTask(api, before.projectId, retry, before.sessionId))
      }
      case "trace": {
        if (id === undefined) return yield* usage("task", "sam task trace task_…")
        const trace = yield* api.call(Api.TraceEndpoints.getTaskTrace, { params: { taskId: id } })
        if (trace.requests.length === 0) return yield* out(`no traced requests for ${trace.taskId}\n`)
        const ms = (n: number) => `+${n} ms`
        const blocks = trace.requests.map(
          (request) =>
            `request ${request.correlationId} at ${day(request.at)}\n${table([
              ["FIRST", "LAST", "ACTOR", "COMMAND", "COUNT"],
              ...request.hops.map((hop) => [
                ms(hop.firstMs),
                hop.count > 1 ? ms(hop.lastMs) : "",
                `${hop.kind}/${hop.entityId}`,
                hop.type,
                String(hop.count)
              ])
            ])}`
        )
        return yield* out(`${blocks.join("\n\n")}\n`)
      }
      default:
        return yield* usage(
          "task",
          `${CREATE_USAGE}\n       sam task list [--project P] | get|cancel|retry|trace task_…`
        )
    }
  })

/** How long `sam session cancel` waits for the turn to end (a node stops an agent that ignores it within seconds). */
const CANCEL_WAIT = Duration.seconds(30)

/** `sam session …` */
export const session = (args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const { words } = parseArgs(args)
    const [verb, id, ...rest] = words
    if (id === undefined)
      return yield* usage(
        "session",
        'sam session prompt sess_… "…" | cancel|stop|watch sess_… | answer sess_… [perm_… option]'
      )
    const api = yield* LocalClient.api()
    switch (verb) {
      case "prompt": {
        if (rest.length === 0) return yield* usage("session", 'sam session prompt sess_… "prompt"')
        const before = yield* api.call(S.getSession, { params: { sessionId: id } })
        let epoch = Number.POSITIVE_INFINITY
        const prompt = api.call(S.promptSession, { params: { sessionId: id }, body: { prompt: rest.join(" ") } }).pipe(
          Effect.tap((accepted) =>
            Effect.sync(() => {
              epoch = accepted.promptEpoch
            })
          ),
          Effect.asVoid
        )
        // This prompt's turn ends, not one still running from before it.
        const end = yield* followSession(
          api,
          id,
          before.lastSeq,
          prompt,
          (f) => f.type === "session.event" && f.promptEpoch >= epoch && TURN_ENDS.has(f.event.type)
        )
        // a turn that did not end as the agent's own answer is a failed command (its reason is printed above)
        if (end.type === "session.event" && end.event.type !== "turn-ended")
          return yield* new StackError({ step: "session", message: `the turn ended ${end.event.type}` })
        return
      }
      case "cancel": {
        const before = yield* api.call(S.getSession, { params: { sessionId: id } })
        const answer = yield* api.call(S.cancelSession, { params: { sessionId: id } })
        // "sent" only when a turn was in flight: a cancel of an idle session (its turn ended, or not begun yet) does nothing
        if (!answer.accepted) return yield* out(`nothing to cancel: ${id} has no turn running (it is idle)\n`)
        yield* out(`cancel sent to ${id}; its turn ends:\n`)
        // How it ends is the node's to say: the turn may have ended on its own before the cancel reached the agent. What
        // came after `before` is replayed by the feed, so an end that came meanwhile is not missed.
        const end = yield* followSession(
          api,
          id,
          before.lastSeq,
          Effect.void,
          (f) => f.type === "session.event" && TURN_ENDS.has(f.event.type)
        ).pipe(Effect.timeoutOption(CANCEL_WAIT))
        if (Option.isNone(end)) {
          return yield* new StackError({
            step: "session",
            message: `its turn has not ended within ${Duration.format(CANCEL_WAIT)} of the cancel (its node may be unreachable); follow it with ./sam session watch ${id}`
          })
        }
        const ended = end.value
        if (
          ended.type === "session.event" &&
          ended.event.type === "turn-ended" &&
          ended.event.stopReason !== "cancelled"
        )
          return yield* out(
            `the turn had ended on its own (${ended.event.stopReason}) before the cancel reached the agent\n`
          )
        return
      }
      case "stop": {
        const stopped = yield* api.call(S.stopSession, { params: { sessionId: id } })
        return yield* out(`session ${stopped.id} ${stopped.status}\n`)
      }
      case "answer": {
        // Without a request: what waits, and how to answer it (ADR 0018).
        const [requestId, choice] = rest
        if (requestId === undefined || choice === undefined) {
          const current = yield* api.call(S.getSession, { params: { sessionId: id } })
          const pending = current.snapshot?.permissions ?? []
          if (pending.length === 0) return yield* out(`no permission request waits in ${id}\n`)
          for (const p of pending) {
            const options = p.options.map((o) => `${o.optionId} (${o.name})`).join(", ")
            yield* out(
              `${p.requestId}: ${p.title ?? "a tool call"}; options: ${options}, cancelled; until ${p.expiresAt}\n`
            )
          }
          return yield* out(`answer with ./sam session answer ${id} <requestId> <option>\n`)
        }
        const answered = yield* api.call(S.answerPermission, {
          params: { sessionId: id, requestId },
          body: choice === "cancelled" || choice === "cancel" ? { outcome: "cancelled" } : { optionId: choice }
        })
        return yield* out(`${answered.requestId} answered: ${answered.outcome}\n`)
      }
      case "watch":
        // The whole transcript from the feed's catch-up, then live, until Ctrl-C or the session ends.
        yield* api.call(S.getSession, { params: { sessionId: id } })
        return yield* followSession(api, id, 0, Effect.void, () => false)
      default:
        return yield* new StackError({ step: "session", message: `unknown session command ${verb}` })
    }
  })
