import { component$ } from "@builder.io/qwik"
import { type DocumentHead, Form, routeAction$, routeLoader$ } from "@builder.io/qwik-city"
import * as Api from "@sam/bus/api"
import { Either } from "effect"
import type { z } from "zod"
import { Link } from "~/components/Link"
import { clientOf, load, run } from "~/lib/server"

/**
 * A project's agent profiles (ADR 0024) and runtime environment: variables and files given to the agent's process
 * when a workspace starts, the project's overlaid by the profile's on the same key or path. Secret values are
 * write-only here: the API answers them masked (`value: null, hasValue: true`).
 */
export const useAgentsPage = routeLoader$(async (event) => {
  const client = clientOf(event)
  const projectId = event.params.projectId!
  const [project, agents, profiles, runtime] = await Promise.all([
    load(event, client.call(Api.ProjectEndpoints.getProject, { params: { projectId } })),
    load(event, client.call(Api.AgentEndpoints.listAgents)),
    load(event, client.call(Api.AgentEndpoints.listProfiles, { params: { projectId } })),
    load(event, client.call(Api.AgentEndpoints.projectRuntime.get, { params: { projectId } }))
  ])
  const profileRuntime = await Promise.all(
    profiles.profiles.map((p) =>
      load(event, client.call(Api.AgentEndpoints.profileRuntime.get, { params: { projectId, profileId: p.id } }))
    )
  )
  return {
    project,
    agents: agents.agents,
    profiles: profiles.profiles.map((p, n) => ({ ...p, runtime: profileRuntime[n]! })),
    runtime
  }
})

const text = (value: unknown) => String(value ?? "").trim()
const orNull = (value: unknown) => (text(value) === "" ? null : text(value))

/** The profile fields of a form; a field that is absent stays out (PATCH changes only what is sent). */
const profileFields = (form: Record<string, unknown>) => ({
  ...(form.name !== undefined ? { name: text(form.name) } : {}),
  ...(form.agent !== undefined ? { agent: text(form.agent) } : {}),
  ...(form.model !== undefined ? { model: orNull(form.model) } : {}),
  ...(form.permissionMode !== undefined ? { permissionMode: text(form.permissionMode) } : {}),
  ...(form.systemPromptAppend !== undefined ? { systemPromptAppend: orNull(form.systemPromptAppend) } : {}),
  ...(form.taskMode !== undefined ? { taskMode: text(form.taskMode) } : {})
})

/** A form's `scope`: empty for the project's own assets, else a profile id. */
const scopeOf = (form: Record<string, unknown>) => text(form.scope)

export const useCreateProfile = routeAction$(async (form, event) => {
  const body = Api.AgentProfileInput.safeParse(profileFields(form))
  if (!body.success) return event.fail(400, { scope: "new", message: body.error.issues[0]?.message ?? "invalid" })
  const r = await run(
    clientOf(event).call(Api.AgentEndpoints.createProfile, {
      params: { projectId: event.params.projectId! },
      body: body.data
    })
  )
  return Either.isLeft(r) ? event.fail(r.left.status || 502, { scope: "new", message: r.left.message }) : r.right
})

export const useUpdateProfile = routeAction$(async (form, event) => {
  const profileId = scopeOf(form)
  const body = Api.AgentProfilePatch.safeParse(profileFields(form))
  if (!body.success) return event.fail(400, { scope: profileId, message: body.error.issues[0]?.message ?? "invalid" })
  const r = await run(
    clientOf(event).call(Api.AgentEndpoints.updateProfile, {
      params: { projectId: event.params.projectId!, profileId },
      body: body.data
    })
  )
  return Either.isLeft(r) ? event.fail(r.left.status || 502, { scope: profileId, message: r.left.message }) : r.right
})

export const useDeleteProfile = routeAction$(async (form, event) => {
  const profileId = scopeOf(form)
  const r = await run(
    clientOf(event).call(Api.AgentEndpoints.deleteProfile, {
      params: { projectId: event.params.projectId!, profileId }
    })
  )
  return Either.isLeft(r)
    ? event.fail(r.left.status || 502, { scope: profileId, message: r.left.message })
    : { deleted: profileId }
})

/** Sets, or removes (`remove` in the form), a runtime variable or file of the project or of a profile. */
export const useRuntime = routeAction$(async (form, event) => {
  const client = clientOf(event)
  const projectId = event.params.projectId!
  const scope = scopeOf(form)
  const isSecret = form.isSecret === "on" || form.isSecret === "true"
  const remove = form.remove !== undefined
  const kind = form.kind === "file" ? "file" : "env"
  const endpoints = scope === "" ? Api.AgentEndpoints.projectRuntime : Api.AgentEndpoints.profileRuntime
  const params = scope === "" ? { projectId } : { projectId, profileId: scope }
  const r = await run(
    kind === "env"
      ? remove
        ? client.call(endpoints.deleteEnv, { params: { ...params, key: text(form.key) } } as never)
        : client.call(endpoints.setEnv, {
            params,
            body: { key: text(form.key), value: String(form.value ?? ""), isSecret }
          } as never)
      : remove
        ? client.call(endpoints.deleteFile, { params, query: { path: text(form.path) } } as never)
        : client.call(endpoints.setFile, {
            params,
            body: { path: text(form.path), content: String(form.content ?? ""), isSecret }
          } as never)
  )
  return Either.isLeft(r) ? event.fail(r.left.status || 502, { scope, message: r.left.message }) : { scope, ok: true }
})

const MASK = "••••••••"

/** A runtime variable's or file's Remove button, in its own table cell. */
const RemoveCell = component$<{ scope: string; kind: "env" | "file"; name: string }>((props) => {
  const runtime = useRuntime()
  return (
    <td>
      <Form action={runtime}>
        <input type="hidden" name="scope" value={props.scope} />
        <input type="hidden" name="kind" value={props.kind} />
        <input type="hidden" name={props.kind === "env" ? "key" : "path"} value={props.name} />
        <input type="hidden" name="remove" value="1" />
        <button class="btn btn-sm btn-danger" type="submit" aria-label={`Remove ${props.name}`}>
          Remove
        </button>
      </Form>
    </td>
  )
})

const RuntimeEditor = component$<{ scope: string; label: string }>((props) => {
  const runtime = useRuntime()
  // read from the loader here (not passed down) so that the list follows the loader after each action
  const data = useAgentsPage()
  const config =
    (props.scope === "" ? data.value.runtime : data.value.profiles.find((p) => p.id === props.scope)?.runtime) ??
    ({ envVars: [], files: [] } satisfies Api.RuntimeConfig)
  const id = props.scope === "" ? "project" : props.scope
  const editable = data.value.project.role === "owner"
  return (
    <div class="stack" data-testid={`runtime-${id}`}>
      <h3 style={{ margin: 0 }}>Environment variables</h3>
      {config.envVars.length === 0 && <p class="hint muted">None.</p>}
      <table class="table">
        <tbody>
          {config.envVars.map((v) => (
            <tr key={v.key} data-testid={`env-${v.key}`}>
              <td class="mono">{v.key}</td>
              <td class="mono">{v.isSecret ? MASK : v.value}</td>
              <td>{v.isSecret && <span class="badge">secret</span>}</td>
              {editable && <RemoveCell scope={props.scope} kind="env" name={v.key} />}
            </tr>
          ))}
        </tbody>
      </table>
      {editable && (
        <Form action={runtime} spaReset class="row" style={{ alignItems: "end" }}>
          <input type="hidden" name="scope" value={props.scope} />
          <input type="hidden" name="kind" value="env" />
          <div class="field">
            <label for={`env-key-${id}`}>Name</label>
            <input class="input mono" id={`env-key-${id}`} name="key" placeholder="FOO" required />
          </div>
          <div class="field" style={{ flex: 1, minWidth: "160px" }}>
            <label for={`env-value-${id}`}>Value</label>
            <input class="input mono" id={`env-value-${id}`} name="value" autocomplete="off" spellcheck={false} />
          </div>
          <label class="row" style={{ gap: "4px" }}>
            <input type="checkbox" name="isSecret" id={`env-secret-${id}`} /> secret
          </label>
          <button class="btn" type="submit" aria-label={`Set a variable of ${props.label}`}>
            Set
          </button>
        </Form>
      )}
      <h3 style={{ margin: 0 }}>Files</h3>
      {config.files.length === 0 && <p class="hint muted">None.</p>}
      <table class="table">
        <tbody>
          {config.files.map((f) => (
            <tr key={f.path} data-testid={`file-${f.path}`}>
              <td class="mono">{f.path}</td>
              <td class="mono" style={{ whiteSpace: "pre-wrap" }}>
                {f.isSecret ? MASK : (f.content ?? "").slice(0, 200)}
              </td>
              <td>{f.isSecret && <span class="badge">secret</span>}</td>
              {editable && <RemoveCell scope={props.scope} kind="file" name={f.path} />}
            </tr>
          ))}
        </tbody>
      </table>
      {editable && (
        <Form action={runtime} spaReset class="stack">
          <input type="hidden" name="scope" value={props.scope} />
          <input type="hidden" name="kind" value="file" />
          <div class="row" style={{ alignItems: "end" }}>
            <div class="field" style={{ flex: 1, minWidth: "200px" }}>
              <label for={`file-path-${id}`}>Path (relative to the checkout, or ~/…)</label>
              <input class="input mono" id={`file-path-${id}`} name="path" placeholder="~/.config/tool.toml" required />
            </div>
            <label class="row" style={{ gap: "4px" }}>
              <input type="checkbox" name="isSecret" id={`file-secret-${id}`} /> secret
            </label>
            <button class="btn" type="submit" aria-label={`Set a file of ${props.label}`}>
              Set file
            </button>
          </div>
          <div class="field">
            <label for={`file-content-${id}`}>Content</label>
            <textarea class="input mono" id={`file-content-${id}`} name="content" rows={3} spellcheck={false} />
          </div>
        </Form>
      )}
      {runtime.value?.failed && runtime.value.scope === props.scope && (
        <p class="form-error" role="alert">
          {runtime.value.message}
        </p>
      )}
    </div>
  )
})

const ProfileForm = component$<{
  agents: ReadonlyArray<z.infer<typeof Api.HarnessView>>
  profile?: Api.AgentProfile
}>((props) => {
  const p = props.profile
  const id = p?.id ?? "new"
  const agent = props.agents.find((a) => a.id === (p?.agent ?? "demo"))
  return (
    <>
      <div class="row" style={{ alignItems: "end" }}>
        <div class="field" style={{ flex: 1, minWidth: "160px" }}>
          <label for={`pf-name-${id}`}>Name</label>
          <input class="input" id={`pf-name-${id}`} name="name" value={p?.name ?? ""} required maxLength={100} />
        </div>
        <div class="field">
          <label for={`pf-agent-${id}`}>Agent</label>
          <select class="select" id={`pf-agent-${id}`} name="agent">
            {props.agents.map((a) => (
              <option key={a.id} value={a.id} selected={a.id === (p?.agent ?? "demo")}>
                {a.name}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for={`pf-model-${id}`}>Model</label>
          <input
            class="input"
            id={`pf-model-${id}`}
            name="model"
            value={p?.model ?? ""}
            placeholder={agent && agent.models.length > 0 ? agent.models.join(", ") : "the agent's default"}
          />
        </div>
        <div class="field">
          <label for={`pf-perm-${id}`}>Permissions</label>
          <select class="select" id={`pf-perm-${id}`} name="permissionMode">
            {(
              [
                ["ask", "Ask"],
                ["allow-edits", "Allow edits"],
                ["allow-all", "Allow all"]
              ] as const
            ).map(([value, label]) => (
              <option key={value} value={value} selected={(p?.permissionMode ?? "ask") === value}>
                {label}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for={`pf-mode-${id}`}>Default mode</label>
          <select class="select" id={`pf-mode-${id}`} name="taskMode">
            <option value="task" selected={(p?.taskMode ?? "task") === "task"}>
              Task
            </option>
            <option value="conversation" selected={p?.taskMode === "conversation"}>
              Chat
            </option>
          </select>
        </div>
      </div>
      <div class="field">
        <label for={`pf-prompt-${id}`}>System prompt addition</label>
        <textarea class="input" id={`pf-prompt-${id}`} name="systemPromptAppend" rows={2} maxLength={20_000}>
          {p?.systemPromptAppend ?? ""}
        </textarea>
      </div>
    </>
  )
})

export default component$(() => {
  const data = useAgentsPage()
  const create = useCreateProfile()
  const update = useUpdateProfile()
  const remove = useDeleteProfile()
  const { project, agents, profiles } = data.value
  // What tasks start with runs in every member's agent, with that member's credentials: owners change it (ADR 0047).
  const editable = project.role === "owner"
  const failure = (scope: string) =>
    (create.value?.failed && create.value.scope === scope && create.value.message) ||
    (update.value?.failed && update.value.scope === scope && update.value.message) ||
    (remove.value?.failed && remove.value.scope === scope && remove.value.message) ||
    undefined
  return (
    <main class="page">
      <div class="page-narrow">
        <div class="row">
          <h1 style={{ flex: 1 }}>{project.name} · agents</h1>
          <Link class="btn" href="/settings/agents">
            My agent credentials
          </Link>
          <Link class="btn" href={`/projects/${project.id}/chat`}>
            Back to chat
          </Link>
        </div>
        <section class="glass card stack" aria-labelledby="profiles">
          <h2 id="profiles">Agent profiles</h2>
          <p class="hint" style={{ margin: 0 }}>
            A profile is an agent with its model, permissions, prompt addition and default mode, plus runtime variables
            and files that win over the project's on the same name or path. Pick one in the chat's composer.
          </p>
          {!editable && (
            <p class="hint" style={{ margin: 0 }} data-testid="owners-only">
              Only the project's owners change its profiles and runtime: they run in every member's tasks, with that
              member's agent credentials.
            </p>
          )}
          <ul class="list" data-testid="profile-list">
            {profiles.map((p) => (
              <li key={p.id} class="list-item" style={{ display: "block" }} data-testid={`profile-${p.name}`}>
                <details>
                  <summary>
                    <strong>{p.name}</strong>{" "}
                    <span class="muted">
                      {agents.find((a) => a.id === p.agent)?.name ?? p.agent} · {p.model ?? "default model"} ·{" "}
                      {p.permissionMode} · {p.taskMode === "task" ? "task" : "chat"}
                    </span>
                  </summary>
                  <div class="stack" style={{ marginTop: "12px" }}>
                    {!editable && p.systemPromptAppend && (
                      <p class="mono" style={{ margin: 0, whiteSpace: "pre-wrap" }}>
                        {p.systemPromptAppend}
                      </p>
                    )}
                    {editable && (
                      <Form action={update} class="stack">
                        <input type="hidden" name="scope" value={p.id} />
                        <ProfileForm agents={agents} profile={p} />
                        <div class="row">
                          <button class="btn btn-primary" type="submit">
                            Save profile
                          </button>
                        </div>
                      </Form>
                    )}
                    <RuntimeEditor scope={p.id} label={`profile ${p.name}`} />
                    {editable && (
                      <Form action={remove}>
                        <input type="hidden" name="scope" value={p.id} />
                        <button class="btn btn-sm btn-danger" type="submit" aria-label={`Delete profile ${p.name}`}>
                          Delete profile
                        </button>
                      </Form>
                    )}
                    {failure(p.id) && (
                      <p class="form-error" role="alert">
                        {failure(p.id)}
                      </p>
                    )}
                  </div>
                </details>
              </li>
            ))}
            {profiles.length === 0 && <li class="list-item muted">No profiles yet: tasks run the demo agent.</li>}
          </ul>
          {editable && (
            <>
              <h3 style={{ margin: 0 }}>New profile</h3>
              <Form action={create} spaReset class="stack" data-testid="new-profile">
                <ProfileForm agents={agents} />
                <div class="row">
                  <button class="btn btn-primary" type="submit">
                    Create profile
                  </button>
                </div>
              </Form>
            </>
          )}
          {failure("new") && (
            <p class="form-error" role="alert">
              {failure("new")}
            </p>
          )}
        </section>
        <section class="glass card stack" aria-labelledby="project-runtime">
          <h2 id="project-runtime">Project runtime</h2>
          <p class="hint" style={{ margin: 0 }}>
            Given to every agent of this project when its workspace starts; a profile's entry of the same name or path
            wins.
          </p>
          <RuntimeEditor scope="" label="the project" />
        </section>
      </div>
    </main>
  )
})

export const head: DocumentHead = { title: "Agents" }
