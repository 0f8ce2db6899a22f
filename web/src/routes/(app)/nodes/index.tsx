import { component$ } from "@builder.io/qwik"
import { type DocumentHead, Form, routeAction$, routeLoader$ } from "@builder.io/qwik-city"
import * as Api from "@sam/bus/api"
import { Either } from "effect"
import { Link } from "~/components/Link"
import { clientOf, load, run } from "~/lib/server"
import { relativeTime } from "~/lib/sessions"

export const useNodes = routeLoader$((event) => load(event, clientOf(event).call(Api.NodeEndpoints.listNodes)))

/** A join token of mine (one use, minutes) and the one-line command that makes a machine my node (ADR 0027). */
export const useJoinToken = routeAction$(async (_, event) => {
  const r = await run(clientOf(event).call(Api.NodeBootEndpoints.createJoinToken))
  return Either.isLeft(r)
    ? event.fail(r.left.status || 502, { message: r.left.message })
    : { command: r.right.command, samCommand: r.right.samCommand, expiresAt: r.right.expiresAt }
})

export const healthBadge = (health: string) =>
  health === "healthy" ? "badge-success" : health === "stale" ? "badge-warning" : "badge-danger"

export default component$(() => {
  const nodes = useNodes()
  const join = useJoinToken()
  return (
    <main class="page">
      <div class="page-narrow">
        <h1>Nodes</h1>
        <p class="muted" style={{ margin: 0 }}>
          The machines running your agents. Local nodes start on demand when a task needs one.
        </p>
        <section class="glass card stack">
          <h2>Join your own machine</h2>
          <p class="muted" style={{ margin: 0 }}>
            Any Linux machine with Node.js 20 or later (or apt) becomes one of your nodes: run the command as root
            there. It needs no open port, only an outbound connection to this address.
          </p>
          <Form action={join}>
            <button class="btn" type="submit">
              Show the install command
            </button>
          </Form>
          {join.value?.command && (
            <>
              <pre
                class="secret"
                style={{ margin: 0, whiteSpace: "pre-wrap", wordBreak: "break-all" }}
                data-testid="join-command"
              >
                {join.value.command}
              </pre>
              <p class="hint">
                Or, from a checkout of SAM: <span class="mono">{join.value.samCommand}</span>. The token works once,
                until {join.value.expiresAt}.
              </p>
            </>
          )}
          {join.value?.message && <p class="form-error">{join.value.message}</p>}
        </section>
        {nodes.value.nodes.length === 0 ? (
          <p class="glass card empty">No nodes yet: the first task starts one.</p>
        ) : (
          <ul class="list" data-testid="nodes">
            {nodes.value.nodes.map((n) => (
              <li key={n.id}>
                <Link class="list-item" href={`/nodes/${n.id}`}>
                  <span class="mono" style={{ flex: 1, minWidth: 0, overflow: "hidden", textOverflow: "ellipsis" }}>
                    {n.id}
                  </span>
                  <span class="badge">{n.provider}</span>
                  <span class="badge">{n.status}</span>
                  <span class={["badge", healthBadge(n.health)]}>{n.health}</span>
                  <span class="badge" title="workspaces in use of its capacity">
                    {n.activeWorkspaces}/{n.maxWorkspaces}
                  </span>
                  <span class="muted hide-phone" style={{ fontSize: "var(--text-xs)" }}>
                    {n.lastHeartbeatAt ? `heartbeat ${relativeTime(n.lastHeartbeatAt)}` : "no heartbeat"}
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

export const head: DocumentHead = { title: "Nodes" }
