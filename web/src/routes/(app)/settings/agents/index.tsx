import { component$ } from "@builder.io/qwik"
import { type DocumentHead, Form, routeAction$, routeLoader$ } from "@builder.io/qwik-city"
import * as Api from "@sam/bus/api"
import { Either } from "effect"
import { Link } from "~/components/Link"
import { clientOf, load, run } from "~/lib/server"
import { relativeTime } from "~/lib/sessions"

/**
 * Your credentials for the coding agents (ADR 0024): one per agent, sent once, stored encrypted and never shown
 * again (the API answers `hasValue: true`); a new one replaces it, removing it revokes it.
 */
export const useAgentCredentials = routeLoader$(async (event) => {
  const client = clientOf(event)
  const [agents, credentials] = await Promise.all([
    load(event, client.call(Api.AgentEndpoints.listAgents)),
    load(event, client.call(Api.AgentEndpoints.listCredentials))
  ])
  return {
    agents: agents.agents.filter((a) => a.credentialKinds.length > 0),
    credentials: credentials.credentials
  }
})

export const useSetAgentCredential = routeAction$(async (form, event) => {
  const agent = Api.AgentParams.shape.agent.safeParse(form.agent)
  const kind = Api.CredentialKind.safeParse(form.kind)
  if (!agent.success || !kind.success)
    return event.fail(400, { agent: String(form.agent), message: "unknown agent or kind" })
  const r = await run(
    clientOf(event).call(Api.AgentEndpoints.setCredential, {
      params: { agent: agent.data },
      body: { kind: kind.data, value: String(form.value ?? "") }
    })
  )
  return Either.isLeft(r)
    ? event.fail(r.left.status || 502, { agent: agent.data, message: r.left.message })
    : { agent: agent.data, saved: true }
})

export const useRemoveAgentCredential = routeAction$(async (form, event) => {
  const agent = Api.AgentParams.shape.agent.safeParse(form.agent)
  if (!agent.success) return event.fail(400, { agent: String(form.agent), message: "unknown agent" })
  const r = await run(clientOf(event).call(Api.AgentEndpoints.deleteCredential, { params: { agent: agent.data } }))
  return Either.isLeft(r)
    ? event.fail(r.left.status || 502, { agent: agent.data, message: r.left.message })
    : { agent: agent.data, removed: true }
})

export default component$(() => {
  const data = useAgentCredentials()
  const save = useSetAgentCredential()
  const remove = useRemoveAgentCredential()
  return (
    <main class="page">
      <div class="page-narrow">
        <div class="row">
          <h1 style={{ flex: 1 }}>Agent credentials</h1>
          <Link class="btn" href="/settings">
            All settings
          </Link>
        </div>
        <p class="hint">
          Your own key or token for each coding agent. It is stored encrypted, given only to that agent's process when
          one of your tasks starts it, and never shown again here or by the API. Saving a new one replaces it.
        </p>
        {data.value.agents.map((agent) => {
          const stored = data.value.credentials.find((c) => c.agent === agent.id)
          const failed =
            (save.value?.failed && save.value.agent === agent.id && save.value.message) ||
            (remove.value?.failed && remove.value.agent === agent.id && remove.value.message) ||
            undefined
          return (
            <section
              key={agent.id}
              class="glass card stack"
              aria-labelledby={`cred-${agent.id}`}
              data-testid={`credential-${agent.id}`}
            >
              <div class="row">
                <h2 id={`cred-${agent.id}`} style={{ flex: 1, margin: 0 }}>
                  {agent.name}
                </h2>
                <span class="muted mono">
                  {agent.package}@{agent.version}
                </span>
              </div>
              <p data-testid={`credential-status-${agent.id}`} style={{ margin: 0 }}>
                {stored
                  ? `${agent.credentialKinds.find((k) => k.kind === stored.kind)?.label ?? stored.kind} set · updated ${relativeTime(stored.updatedAt)}`
                  : "No credential set"}
              </p>
              <Form action={save} spaReset class="row" style={{ alignItems: "end" }}>
                <input type="hidden" name="agent" value={agent.id} />
                <div class="field">
                  <label for={`kind-${agent.id}`}>Kind</label>
                  <select class="select" id={`kind-${agent.id}`} name="kind">
                    {agent.credentialKinds.map((k) => (
                      <option key={k.kind} value={k.kind} selected={stored?.kind === k.kind}>
                        {k.label}
                      </option>
                    ))}
                  </select>
                </div>
                <div class="field" style={{ flex: 1, minWidth: "240px" }}>
                  <label for={`value-${agent.id}`}>{stored ? "Replace with" : "Value"}</label>
                  {agent.credentialKinds.some((k) => k.kind === "auth-file") ? (
                    <textarea
                      class="input mono"
                      id={`value-${agent.id}`}
                      name="value"
                      rows={1}
                      autocomplete="off"
                      spellcheck={false}
                      placeholder="a key, or the whole auth.json"
                      required
                    />
                  ) : (
                    <input
                      class="input"
                      id={`value-${agent.id}`}
                      name="value"
                      type="password"
                      autocomplete="off"
                      spellcheck={false}
                      required
                    />
                  )}
                </div>
                <button class="btn btn-primary" type="submit">
                  {stored ? "Rotate" : "Save"}
                </button>
              </Form>
              {stored && (
                <Form action={remove}>
                  <input type="hidden" name="agent" value={agent.id} />
                  <button
                    class="btn btn-sm btn-danger"
                    type="submit"
                    aria-label={`Remove the ${agent.name} credential`}
                  >
                    Remove
                  </button>
                </Form>
              )}
              {failed && (
                <p class="form-error" role="alert">
                  {failed}
                </p>
              )}
            </section>
          )
        })}
      </div>
    </main>
  )
})

export const head: DocumentHead = { title: "Agent credentials" }
