import { component$ } from "@builder.io/qwik"
import { type DocumentHead, routeLoader$, useLocation } from "@builder.io/qwik-city"
import * as Api from "@sam/bus/api"
import { Link } from "~/components/Link"
import { clientOf, load } from "~/lib/server"
import { relativeTime, titleOf } from "~/lib/sessions"

const FILTERS = ["all", "in_progress", "queued", "completed", "failed", "cancelled"] as const

/**
 * The statuses each filter shows: every status is under one of them. A task handed to its workspace
 * (`delegated`) is in progress to the person reading, and one not yet queued (`draft`, `ready`, as a
 * retried one is for a moment) is waiting with the queued ones.
 */
const STATUSES: Record<string, string> = {
  in_progress: "delegated,in_progress",
  queued: "draft,ready,queued",
  completed: "completed",
  failed: "failed",
  cancelled: "cancelled"
}

export const statusBadge = (status: string) =>
  status === "failed"
    ? "badge-danger"
    : status === "completed"
      ? "badge-success"
      : status === "cancelled"
        ? ""
        : "badge-info"

export const useTasks = routeLoader$(async (event) => {
  const client = clientOf(event)
  const projectId = event.params.projectId!
  const asked = event.url.searchParams.get("status") ?? "all"
  const filter = STATUSES[asked] === undefined ? "all" : asked
  const [project, tasks] = await Promise.all([
    load(event, client.call(Api.ProjectEndpoints.getProject, { params: { projectId } })),
    load(
      event,
      client.call(Api.TaskEndpoints.listTasks, {
        params: { projectId },
        query: { limit: 200, ...(filter === "all" ? {} : { status: STATUSES[filter] }) }
      })
    )
  ])
  return { project, tasks: tasks.tasks, filter }
})

export default component$(() => {
  const data = useTasks()
  const loc = useLocation()
  const { project, tasks, filter } = data.value
  return (
    <main class="page">
      <div class="page-narrow">
        <div class="row">
          <h1 style={{ flex: 1 }}>Tasks · {project.name}</h1>
          <Link class="btn" href={`/projects/${project.id}/chat`}>
            Back to chat
          </Link>
        </div>
        <nav
          class="tabs glass"
          aria-label="Filter by status"
          style={{ borderRadius: "var(--radius)", flexWrap: "wrap" }}
        >
          {FILTERS.map((f) => (
            <Link
              key={f}
              class="tab"
              href={`${loc.url.pathname}${f === "all" ? "" : `?status=${f}`}`}
              aria-selected={filter === f}
              style={{ display: "inline-flex", alignItems: "center", textDecoration: "none" }}
            >
              {f.replace("_", " ")}
            </Link>
          ))}
        </nav>
        {tasks.length === 0 ? (
          <p class="glass card empty">No tasks{filter === "all" ? "" : ` ${filter.replace("_", " ")}`}.</p>
        ) : (
          <ul class="list" data-testid="tasks">
            {tasks.map((t) => (
              <li key={t.id}>
                <Link class="list-item" href={`/projects/${project.id}/tasks/${t.id}`}>
                  <span
                    style={{ flex: 1, minWidth: 0, overflow: "hidden", textOverflow: "ellipsis", whiteSpace: "nowrap" }}
                  >
                    {titleOf(t.id, t.prompt)}
                  </span>
                  <span class={["badge", statusBadge(t.status)]}>{t.status.replace("_", " ")}</span>
                  <span class="badge hide-phone">{t.mode}</span>
                  <span class="muted hide-phone" style={{ fontSize: "var(--text-xs)" }}>
                    {relativeTime(t.updatedAt)}
                  </span>
                </Link>
              </li>
            ))}
          </ul>
        )}
      </div>
    </main>
  )
})

export const head: DocumentHead = { title: "Tasks" }
