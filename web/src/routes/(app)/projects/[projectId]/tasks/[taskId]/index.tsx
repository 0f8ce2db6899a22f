import { component$ } from "@builder.io/qwik"
import { type DocumentHead, Form, routeAction$, routeLoader$ } from "@builder.io/qwik-city"
import * as Api from "@sam/bus/api"
import { Either } from "effect"
import { Link } from "~/components/Link"
import { clientOf, load, run } from "~/lib/server"
import { STEP_LABEL, TERMINAL, titleOf } from "~/lib/sessions"
import { useMe } from "~/routes/(app)/layout"

/** The steps in the order a task goes through them; waiting for capacity only when it did. */
const STEPS: ReadonlyArray<string> = Api.Task.shape.executionStep.unwrap().options

type StepState = "done" | "current" | "failed" | "todo"

/**
 * Each execution step with where the task is: steps only move forward (the control plane never
 * goes back one), so every step before the current one is done; the one it failed at is marked.
 */
export const stepStates = (t: {
  readonly status: string
  readonly executionStep: string | null
  readonly errorStep: string | null
}): Array<{ step: string; state: StepState }> => {
  const at = t.status === "failed" ? (t.errorStep ?? t.executionStep) : t.executionStep
  const index = at === null ? (t.status === "completed" ? STEPS.length : -1) : STEPS.indexOf(at)
  return STEPS.filter((step) => step !== "waiting_for_node_capacity" || at === step)
    .filter((step) => step !== "awaiting_followup" || at === step)
    .map((step) => {
      const i = STEPS.indexOf(step)
      const state: StepState =
        i < index || t.status === "completed"
          ? "done"
          : i === index
            ? t.status === "failed"
              ? "failed"
              : TERMINAL.has(t.status)
                ? "done"
                : "current"
            : "todo"
      return { step, state }
    })
}

const STEP_MARK: Record<StepState, string> = { done: "✓", current: "…", failed: "✕", todo: "·" }

export const useTask = routeLoader$((event) =>
  load(event, clientOf(event).call(Api.TaskEndpoints.getTask, { params: { taskId: event.params.taskId! } }))
)

/** The caller's role in the task's project: an owner may cancel any member's task (ADR 0047). */
export const useRole = routeLoader$(async (event) => {
  const project = await load(
    event,
    clientOf(event).call(Api.ProjectEndpoints.getProject, { params: { projectId: event.params.projectId! } })
  )
  return project.role
})

export const useCancel = routeAction$(async (_, event) => {
  const result = await run(
    clientOf(event).call(Api.TaskEndpoints.cancelTask, { params: { taskId: event.params.taskId! }, body: {} })
  )
  return Either.isLeft(result) ? event.fail(result.left.status || 502, { message: result.left.message }) : { ok: true }
})

export const useRetry = routeAction$(async (_, event) => {
  const result = await run(
    clientOf(event).call(Api.TaskEndpoints.retryTask, { params: { taskId: event.params.taskId! } })
  )
  return Either.isLeft(result) ? event.fail(result.left.status || 502, { message: result.left.message }) : { ok: true }
})

export default component$(() => {
  const task = useTask()
  const role = useRole()
  const me = useMe()
  const cancel = useCancel()
  const retry = useRetry()
  const t = task.value
  const error = (cancel.value?.failed && cancel.value.message) || (retry.value?.failed && retry.value.message)
  return (
    <main class="page">
      <div class="page-narrow">
        <div class="row">
          <h1 style={{ flex: 1 }}>{titleOf(t.id, t.prompt)}</h1>
          <span class="badge">{t.status.replace("_", " ")}</span>
        </div>
        {error && (
          <p class="form-error" role="alert">
            {error}
          </p>
        )}
        <section class="glass card stack">
          <dl class="stack" style={{ margin: 0 }}>
            <div class="row">
              <dt class="muted">Step</dt>
              <dd style={{ margin: 0 }}>{t.executionStep ? (STEP_LABEL[t.executionStep] ?? t.executionStep) : "—"}</dd>
            </div>
            {t.errorReason && (
              <div class="row">
                <dt class="muted">Failed</dt>
                <dd style={{ margin: 0, color: "var(--danger)" }}>
                  {t.errorStep ? `at ${t.errorStep}: ` : ""}
                  {t.errorReason}
                </dd>
              </div>
            )}
            <div class="row">
              <dt class="muted">Mode / agent</dt>
              <dd style={{ margin: 0 }}>
                {t.mode} / {t.agent}
              </dd>
            </div>
            {t.branch && (
              <div class="row">
                <dt class="muted">Branch</dt>
                <dd class="mono" style={{ margin: 0 }}>
                  {t.branch}
                </dd>
              </div>
            )}
            {t.prUrl && (
              <div class="row">
                <dt class="muted">Pull request</dt>
                <dd style={{ margin: 0 }}>
                  <a href={t.prUrl} target="_blank" rel="noopener noreferrer" data-testid="task-pull-request">
                    {t.prUrl}
                  </a>
                </dd>
              </div>
            )}
          </dl>
          <div class="row">
            {t.sessionId && (
              <Link class="btn btn-primary" href={`/projects/${t.projectId}/chat/${t.sessionId}`}>
                Open chat
              </Link>
            )}
            {/* its submitter or a project owner ends a task's work (ADR 0047) */}
            {!TERMINAL.has(t.status) && (t.createdBy === me.value.userId || role.value === "owner") && (
              <Form action={cancel}>
                <button class="btn btn-danger" type="submit">
                  Cancel task
                </button>
              </Form>
            )}
            {/* a retry runs the task's agent again, with its submitter's credentials: theirs alone (ADR 0047) */}
            {(t.status === "failed" || t.status === "cancelled") && t.createdBy === me.value.userId && (
              <Form action={retry}>
                <button class="btn" type="submit">
                  Retry
                </button>
              </Form>
            )}
          </div>
        </section>
        <section class="glass card stack" aria-labelledby="steps">
          <h2 id="steps">Execution steps</h2>
          <ol class="steps" data-testid="task-steps">
            {stepStates(t).map(({ step, state }) => (
              <li key={step} class="step" data-step={step} data-state={state}>
                <span class="step-mark" aria-hidden="true">
                  {STEP_MARK[state]}
                </span>
                <span style={{ flex: 1 }}>{(STEP_LABEL[step] ?? step).replace("…", "")}</span>
                <span class="muted" style={{ fontSize: "var(--text-xs)" }}>
                  {state === "done" ? "done" : state === "current" ? "now" : state === "failed" ? "failed here" : ""}
                </span>
              </li>
            ))}
          </ol>
        </section>
        <section class="glass card stack">
          <h2>Status history</h2>
          <table class="table" data-testid="status-history">
            <thead>
              <tr>
                <th>When</th>
                <th>From → to</th>
                <th>By</th>
                <th>Reason</th>
              </tr>
            </thead>
            <tbody>
              {t.statusEvents.map((e, i) => (
                <tr key={i}>
                  <td class="mono">{new Date(e.at).toLocaleTimeString()}</td>
                  <td>
                    {e.from ?? "—"} → <strong>{e.to}</strong>
                  </td>
                  <td>{e.actor}</td>
                  <td>{e.reason ?? ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
        <section class="glass card stack">
          <h2>Prompt</h2>
          <pre class="secret" style={{ margin: 0 }}>
            {t.prompt}
          </pre>
        </section>
      </div>
    </main>
  )
})

export const head: DocumentHead = { title: "Task" }
