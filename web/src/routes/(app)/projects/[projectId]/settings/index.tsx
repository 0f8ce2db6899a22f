import { component$ } from "@builder.io/qwik"
import { type DocumentHead, Form, routeAction$, routeLoader$ } from "@builder.io/qwik-city"
import * as Api from "@sam/bus/api"
import { Either } from "effect"
import { Link } from "~/components/Link"
import { clientOf, load, run } from "~/lib/server"

export const useProjectSettings = routeLoader$(async (event) => {
  const client = clientOf(event)
  const projectId = event.params.projectId!
  const [project, members] = await Promise.all([
    load(event, client.call(Api.ProjectEndpoints.getProject, { params: { projectId } })),
    load(event, client.call(Api.MemberEndpoints.listMembers, { params: { projectId } }))
  ])
  return { project, members: members.members }
})

export const useAddMember = routeAction$(async (form, event) => {
  const login = String(form.login ?? "").trim()
  const role = form.role === "owner" ? "owner" : "member"
  const r = await run(
    clientOf(event).call(Api.MemberEndpoints.addMember, {
      params: { projectId: event.params.projectId! },
      body: { login, role }
    })
  )
  return Either.isLeft(r) ? event.fail(r.left.status || 502, { message: r.left.message }) : { added: r.right.userId }
})

export const useRemoveMember = routeAction$(async (form, event) => {
  const r = await run(
    clientOf(event).call(Api.MemberEndpoints.removeMember, {
      params: { projectId: event.params.projectId!, userId: String(form.userId) }
    })
  )
  return Either.isLeft(r) ? event.fail(r.left.status || 502, { message: r.left.message }) : { removed: true }
})

export default component$(() => {
  const data = useProjectSettings()
  const add = useAddMember()
  const remove = useRemoveMember()
  const { project, members } = data.value
  return (
    <main class="page">
      <div class="page-narrow">
        <div class="row">
          <h1 style={{ flex: 1 }}>{project.name} · settings</h1>
          <Link class="btn" href={`/projects/${project.id}/agents`}>
            Agent profiles
          </Link>
          <Link class="btn" href={`/projects/${project.id}/chat`}>
            Back to chat
          </Link>
        </div>
        <section class="glass card stack">
          <h2>Repository</h2>
          <p class="mono" style={{ margin: 0 }}>
            {project.repoUrl} · {project.defaultBranch}
          </p>
          <p class="hint" style={{ margin: 0 }}>
            Permission requests: {project.permissionPolicy}, answered within {project.permissionTimeoutSeconds} s.
          </p>
        </section>
        <section class="glass card stack" aria-labelledby="members">
          <h2 id="members">Members</h2>
          {(add.value?.failed || remove.value?.failed) && (
            <p class="form-error" role="alert">
              {add.value?.failed ? add.value.message : remove.value?.failed ? remove.value.message : ""}
            </p>
          )}
          <ul class="list" data-testid="members">
            {members.map((m) => (
              <li key={m.userId} class="list-item">
                <span style={{ flex: 1 }}>
                  {m.displayName} <span class="muted">{m.login ?? m.githubLogin ?? ""}</span>
                </span>
                <span class="badge">{m.role}</span>
                {project.role === "owner" && (
                  <Form action={remove}>
                    <input type="hidden" name="userId" value={m.userId} />
                    <button class="btn btn-sm btn-danger" type="submit" aria-label={`Remove ${m.displayName}`}>
                      Remove
                    </button>
                  </Form>
                )}
              </li>
            ))}
          </ul>
          {project.role === "owner" && (
            <Form action={add} class="row" style={{ alignItems: "end" }}>
              <div class="field" style={{ flex: 1, minWidth: "200px" }}>
                <label for="m-login">Login (local or GitHub)</label>
                <input class="input" id="m-login" name="login" required />
              </div>
              <div class="field">
                <label for="m-role">Role</label>
                <select class="select" id="m-role" name="role">
                  <option value="member">Member</option>
                  <option value="owner">Owner</option>
                </select>
              </div>
              <button class="btn btn-primary" type="submit">
                Add member
              </button>
            </Form>
          )}
        </section>
      </div>
    </main>
  )
})

export const head: DocumentHead = { title: "Project settings" }
