import { component$ } from "@builder.io/qwik"
import { type DocumentHead, Form, routeAction$, routeLoader$ } from "@builder.io/qwik-city"
import * as Api from "@sam/bus/api"
import { Either } from "effect"
import { StatusIcon } from "~/components/chat/StatusIcon"
import { Link } from "~/components/Link"
import { clientOf, load, run } from "~/lib/server"
import { ATTENTION_LABEL, attentionOf, relativeTime, titleOf } from "~/lib/sessions"

export const useProjects = routeLoader$(async (event) => {
  const client = clientOf(event)
  const { projects } = await load(event, client.call(Api.ProjectEndpoints.listProjects))
  // Each project's most recent sessions (a few), with their derived status and the prompt that started them.
  const recent = await Promise.all(
    projects.map(async (p) => {
      const [sessions, tasks] = await Promise.all([
        run(client.call(Api.SessionEndpoints.listSessions, { params: { projectId: p.id }, query: { limit: 5 } })),
        run(client.call(Api.TaskEndpoints.listTasks, { params: { projectId: p.id }, query: { limit: 50 } }))
      ])
      const prompts = new Map(Either.isRight(tasks) ? tasks.right.tasks.map((t) => [t.id, t.prompt]) : [])
      return (Either.isRight(sessions) ? sessions.right.sessions : []).map((s) => ({
        id: s.id,
        status: attentionOf(s),
        updatedAt: s.updatedAt,
        title: titleOf(s.id, s.taskId === null ? undefined : prompts.get(s.taskId))
      }))
    })
  )
  return projects.map((project, i) => ({ project, sessions: recent[i] ?? [] }))
})

/**
 * The repositories of my GitHub App installations, for the picker (installation → repository → default
 * branch): none when no app is configured (404) or GitHub cannot be asked now; the URL field stays.
 */
export const useGitHubRepositories = routeLoader$(async (event) => {
  const client = clientOf(event)
  const installations = await run(client.call(Api.GitHubAppEndpoints.listInstallations))
  if (Either.isLeft(installations)) return []
  const groups = await Promise.all(
    installations.right.installations.map(async (installation) => {
      const repos = await run(
        client.call(Api.GitHubAppEndpoints.listRepositories, {
          params: { installationId: installation.installationId }
        })
      )
      return {
        installationId: installation.installationId,
        accountName: installation.accountName,
        repositories: Either.isRight(repos) ? repos.right.repositories : []
      }
    })
  )
  return groups.filter((g) => g.repositories.length > 0)
})

/** Field errors from the API's zod issues: `{ name: "…", repoUrl: "…" }`. */
const fieldErrors = (details: unknown) => {
  const errors: Record<string, string> = {}
  for (const issue of Array.isArray(details) ? details : []) {
    const path = String((issue as { path?: unknown }).path ?? "").split(".")[0] ?? ""
    const message = String((issue as { message?: unknown }).message ?? "")
    if (path !== "" && errors[path] === undefined) errors[path] = message
  }
  return errors
}

export const useCreateProject = routeAction$(async (form, event) => {
  const name = String(form.name ?? "")
  const repoUrl = String(form.repoUrl ?? "")
  const branch = String(form.defaultBranch ?? "").trim()
  // `<installationId>:<owner/name>` from the picker; empty for a URL
  const picked = /^(\d+):(.+)$/.exec(String(form.github ?? ""))
  const source = picked ? { github: { installationId: Number(picked[1]), repository: picked[2] ?? "" } } : { repoUrl }
  const result = await run(
    clientOf(event).call(Api.ProjectEndpoints.createProject, {
      body: { name, ...source, ...(branch === "" ? {} : { defaultBranch: branch }) }
    })
  )
  if (Either.isLeft(result)) {
    const fields = fieldErrors(result.left.details)
    return event.fail(result.left.status || 502, {
      message: Object.keys(fields).length > 0 ? "Fix the fields below." : result.left.message,
      fields,
      values: { name, repoUrl, defaultBranch: branch, github: String(form.github ?? "") }
    })
  }
  throw event.redirect(302, `/projects/${result.right.id}/chat`)
})

export default component$(() => {
  const projects = useProjects()
  const github = useGitHubRepositories()
  const create = useCreateProject()
  const failed = create.value?.failed ? create.value : undefined
  const fields: Record<string, string> = failed?.fields ?? {}
  return (
    <main class="page">
      <div class="page-narrow">
        <div class="row">
          <h1 style={{ flex: 1 }}>Projects</h1>
        </div>
        {projects.value.length === 0 ? (
          <p class="glass card empty">No projects yet: link a repository below and start a chat.</p>
        ) : (
          <ul class="list" data-testid="projects">
            {projects.value.map(({ project, sessions }) => (
              <li key={project.id}>
                <Link
                  class="list-item glass"
                  href={`/projects/${project.id}/chat`}
                  style={{ borderRadius: "var(--radius-lg)" }}
                >
                  <div style={{ flex: 1, minWidth: 0 }}>
                    <div style={{ fontWeight: 700 }}>{project.name}</div>
                    <div
                      class="muted mono"
                      style={{ fontSize: "var(--text-xs)", overflow: "hidden", textOverflow: "ellipsis" }}
                    >
                      {project.repoUrl} · {project.defaultBranch}
                    </div>
                  </div>
                  <div class="row" style={{ gap: "var(--space-1)" }}>
                    {sessions.filter((s) => s.status === "working" || s.status === "needs_input").length > 0 && (
                      <span class="badge badge-success">
                        {sessions.filter((s) => s.status === "working" || s.status === "needs_input").length} active
                      </span>
                    )}
                    <span class="badge">{sessions.length === 0 ? "no chats" : `${sessions.length} recent`}</span>
                  </div>
                </Link>
                {sessions.length > 0 && (
                  <ul class="sessions" style={{ padding: "var(--space-1) 0 0 var(--space-4)" }}>
                    {sessions.slice(0, 3).map((s) => (
                      <li key={s.id}>
                        <Link class="session-row" href={`/projects/${project.id}/chat/${s.id}`} data-status={s.status}>
                          <StatusIcon status={s.status} />
                          <span class="session-title">{s.title}</span>
                          <span class="session-meta">
                            <span>{ATTENTION_LABEL[s.status]}</span>
                            <span>{relativeTime(s.updatedAt)}</span>
                          </span>
                        </Link>
                      </li>
                    ))}
                  </ul>
                )}
              </li>
            ))}
          </ul>
        )}
        <section class="glass card stack" aria-labelledby="new-project">
          <h2 id="new-project">New project</h2>
          <Form action={create} class="stack">
            {failed && (
              <p class="form-error" role="alert">
                {failed.message}
              </p>
            )}
            <div class="field">
              <label for="p-name">Name</label>
              <input
                class="input"
                id="p-name"
                name="name"
                value={failed?.values.name ?? ""}
                aria-invalid={fields.name ? "true" : undefined}
                aria-describedby={fields.name ? "p-name-error" : undefined}
              />
              {fields.name && (
                <span class="field-error" id="p-name-error">
                  {fields.name}
                </span>
              )}
            </div>
            {github.value.length > 0 && (
              <div class="field">
                <label for="p-github">GitHub repository</label>
                <select
                  class="input"
                  id="p-github"
                  name="github"
                  data-testid="github-repository"
                  aria-invalid={fields.github ? "true" : undefined}
                  aria-describedby={fields.github ? "p-github-error" : undefined}
                >
                  <option value="">None: use the URL below</option>
                  {github.value.map((installation) => (
                    <optgroup key={installation.installationId} label={installation.accountName}>
                      {installation.repositories.map((repo) => {
                        const value = `${installation.installationId}:${repo.fullName}`
                        return (
                          <option key={value} value={value} selected={failed?.values.github === value}>
                            {`${repo.fullName} (${repo.defaultBranch}${repo.private ? ", private" : ""})`}
                          </option>
                        )
                      })}
                    </optgroup>
                  ))}
                </select>
                <span class="muted" style={{ fontSize: "var(--text-xs)" }}>
                  Through the GitHub App: workspaces get a token for it, tasks end in a pull request. The default branch
                  is GitHub&apos;s unless you give one.
                </span>
                {fields.github && (
                  <span class="field-error" id="p-github-error">
                    {fields.github}
                  </span>
                )}
              </div>
            )}
            <div class="field">
              <label for="p-repo">Repository URL</label>
              <input
                class="input mono"
                id="p-repo"
                name="repoUrl"
                placeholder="https://github.com/you/repo.git or /path/to/repo"
                value={failed?.values.repoUrl ?? ""}
                aria-invalid={fields.repoUrl ? "true" : undefined}
                aria-describedby={fields.repoUrl ? "p-repo-error" : undefined}
              />
              {fields.repoUrl && (
                <span class="field-error" id="p-repo-error">
                  {fields.repoUrl}
                </span>
              )}
            </div>
            <div class="field">
              <label for="p-branch">Default branch</label>
              <input
                class="input mono"
                id="p-branch"
                name="defaultBranch"
                placeholder="the repository's own, else main"
                value={failed?.values.defaultBranch ?? ""}
                aria-invalid={fields.defaultBranch ? "true" : undefined}
                aria-describedby={fields.defaultBranch ? "p-branch-error" : undefined}
              />
              {fields.defaultBranch && (
                <span class="field-error" id="p-branch-error">
                  {fields.defaultBranch}
                </span>
              )}
            </div>
            <div>
              <button class="btn btn-primary" type="submit" disabled={create.isRunning}>
                {create.isRunning ? "Creating…" : "Create project"}
              </button>
            </div>
          </Form>
        </section>
      </div>
    </main>
  )
})

export const head: DocumentHead = { title: "Projects" }
