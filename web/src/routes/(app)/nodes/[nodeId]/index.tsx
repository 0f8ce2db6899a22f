import { component$ } from "@builder.io/qwik"
import { type DocumentHead, routeAction$, routeLoader$ } from "@builder.io/qwik-city"
import * as Api from "@sam/bus/api"
import { Either } from "effect"
import { ConfirmAction } from "~/components/Confirm"
import { Link } from "~/components/Link"
import { NodeBootLog } from "~/components/NodeBootLog"
import { clientOf, load, run } from "~/lib/server"

export const useNode = routeLoader$(async (event) => {
  const client = clientOf(event)
  const nodeId = event.params.nodeId!
  const [node, projects, bootLog] = await Promise.all([
    load(event, client.call(Api.NodeEndpoints.getNode, { params: { nodeId } })),
    load(event, client.call(Api.ProjectEndpoints.listProjects)),
    run(client.call(Api.NodeBootEndpoints.nodeBootLog, { params: { nodeId } }))
  ])
  const lists = await Promise.all(
    projects.projects.map((p) =>
      run(client.call(Api.WorkspaceEndpoints.listWorkspaces, { params: { projectId: p.id }, query: { limit: 200 } }))
    )
  )
  const workspaces = lists
    .flatMap((l) => (Either.isRight(l) ? l.right.workspaces : []))
    .filter((w) => w.nodeId === nodeId)
  return { node, workspaces, boot: Either.isRight(bootLog) ? bootLog.right.entries : [] }
})

export const useStopNode = routeAction$(async (_, event) => {
  const r = await run(clientOf(event).call(Api.NodeEndpoints.stopNode, { params: { nodeId: event.params.nodeId! } }))
  return Either.isLeft(r)
    ? event.fail(r.left.status || 502, { message: r.left.message })
    : { message: "Its workspaces were told to stop." }
})

export const useDeleteNode = routeAction$(async (_, event) => {
  const r = await run(clientOf(event).call(Api.NodeEndpoints.deleteNode, { params: { nodeId: event.params.nodeId! } }))
  return Either.isLeft(r)
    ? event.fail(r.left.status || 502, { message: r.left.message })
    : { message: r.right.note ?? "The node is being retired." }
})

export default component$(() => {
  const data = useNode()
  const stop = useStopNode()
  const del = useDeleteNode()
  const { node, workspaces, boot } = data.value
  const message = stop.value?.message ?? del.value?.message
  return (
    <main class="page">
      <div class="page-narrow">
        <div class="row">
          <h1 class="mono" style={{ flex: 1, fontSize: "var(--text-lg)" }}>
            {node.id}
          </h1>
          <ConfirmAction action={stop} label="Stop workspaces" confirm="Stop every workspace on this node?" />
          <ConfirmAction action={del} label="Delete node" confirm="Retire this node and delete its workspaces?" />
        </div>
        {message && <p class="hint">{message}</p>}
        <section class="glass card stack">
          <div class="row">
            <span class="badge">{node.provider}</span>
            <span class="badge">{node.status}</span>
            <span class="badge">{node.health}</span>
            <span class="badge">{node.ready ? "ready" : "not ready"}</span>
            <span class="badge">
              capacity {node.activeWorkspaces}/{node.maxWorkspaces}
            </span>
          </div>
          {node.errorReason && <p class="form-error">{node.errorReason}</p>}
        </section>
        <NodeBootLog key={node.id} nodeId={node.id} initial={boot} live={node.provider !== "local"} />
        <section class="glass card stack">
          <h2>Workspaces</h2>
          {workspaces.length === 0 ? (
            <p class="hint">No workspaces of your projects on this node.</p>
          ) : (
            <ul class="list">
              {workspaces.map((w) => (
                <li key={w.id}>
                  <Link class="list-item" href={`/workspaces/${w.id}`}>
                    <span class="mono" style={{ flex: 1 }}>
                      {w.id}
                    </span>
                    <span class="badge">{w.status}</span>
                    <span class="badge">{w.runtime ?? "—"}</span>
                  </Link>
                </li>
              ))}
            </ul>
          )}
        </section>
      </div>
    </main>
  )
})

export const head: DocumentHead = { title: "Node" }
