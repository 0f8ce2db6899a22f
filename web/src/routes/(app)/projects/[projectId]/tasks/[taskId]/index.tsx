import { component$ } from "@builder.io/qwik"
import { type DocumentHead, Form, Link, routeAction$, routeLoader$ } from "@builder.io/qwik-city"
import * as Api from "@sam/bus/api"
import { Either } from "effect"
import { clientOf, load, run } from "~/lib/server"
import { STEP_LABEL, TERMINAL, titleOf } from "~/lib/sessions"

export const useTask = routeLoader$((event) =>
  load(event, clientOf(event).call(Api.TaskEndpoints.getTask, { params: { taskId: event.params.taskId! } }))
)

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
            {!TERMINAL.has(t.status) && (
              <Form action={cancel}>
                <button class="btn btn-danger" type="submit">
                  Cancel task
                </button>
              </Form>
            )}
            {(t.status === "failed" || t.status === "cancelled") && (
              <Form action={retry}>
                <button class="btn" type="submit">
                  Retry
                </button>
              </Form>
            )}
          </div>
        </section>
        <section class="glass card stack">
          <h2>Status history</h2>
          <table class="table">
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
