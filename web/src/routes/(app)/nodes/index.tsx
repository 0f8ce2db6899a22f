import { component$ } from "@builder.io/qwik"
import { type DocumentHead, Link, routeLoader$ } from "@builder.io/qwik-city"
import * as Api from "@sam/bus/api"
import { clientOf, load } from "~/lib/server"
import { relativeTime } from "~/lib/sessions"

export const useNodes = routeLoader$((event) => load(event, clientOf(event).call(Api.NodeEndpoints.listNodes)))

export const healthBadge = (health: string) =>
  health === "healthy" ? "badge-success" : health === "stale" ? "badge-warning" : "badge-danger"

export default component$(() => {
  const nodes = useNodes()
  return (
    <main class="page">
      <div class="page-narrow">
        <h1>Nodes</h1>
        <p class="muted" style={{ margin: 0 }}>
          The machines running your agents. Local nodes start on demand when a task needs one.
        </p>
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
