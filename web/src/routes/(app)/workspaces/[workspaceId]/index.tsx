import { component$ } from "@builder.io/qwik"
import { type DocumentHead, routeAction$, routeLoader$ } from "@builder.io/qwik-city"
import * as Api from "@sam/bus/api"
import { Either } from "effect"
import { ConfirmAction } from "~/components/Confirm"
import { Link } from "~/components/Link"
import { NodeBootLog } from "~/components/NodeBootLog"
import { clientOf, load, run } from "~/lib/server"
import { useMe } from "~/routes/(app)/layout"

export const useWorkspace = routeLoader$(async (event) => {
  const client = clientOf(event)
  const workspaceId = event.params.workspaceId!
  const [workspace, bootlog] = await Promise.all([
    load(event, client.call(Api.WorkspaceEndpoints.getWorkspace, { params: { workspaceId } })),
    load(
      event,
      client.call(Api.WorkspaceEndpoints.workspaceBootLog, { params: { workspaceId }, query: { limit: 1000 } })
    )
  ])
  const [nodeBoot, project, task] = await Promise.all([
    // The boot of the node it is on (a cloud node's or a joined machine's; a local node has none).
    workspace.nodeId === null || workspace.nodeId === undefined
      ? Promise.resolve(undefined)
      : run(client.call(Api.NodeBootEndpoints.nodeBootLog, { params: { nodeId: workspace.nodeId } })),
    // Who may stop or delete it (ADR 0047): its task's submitter, or an owner of its project.
    run(client.call(Api.ProjectEndpoints.getProject, { params: { projectId: workspace.projectId } })),
    workspace.taskId === null
      ? Promise.resolve(undefined)
      : run(client.call(Api.TaskEndpoints.getTask, { params: { taskId: workspace.taskId } }))
  ])
  return {
    workspace,
    owner: project !== undefined && Either.isRight(project) && project.right.role === "owner",
    submitter: task !== undefined && Either.isRight(task) ? task.right.createdBy : null,
    lines: bootlog.lines,
    nodeBoot: nodeBoot !== undefined && Either.isRight(nodeBoot) ? nodeBoot.right.entries : []
  }
})

export const useStop = routeAction$(async (_, event) => {
  const r = await run(
    clientOf(event).call(Api.WorkspaceEndpoints.stopWorkspace, { params: { workspaceId: event.params.workspaceId! } })
  )
  return Either.isLeft(r) ? event.fail(r.left.status || 502, { message: r.left.message }) : { message: "Stopping." }
})

export const useDelete = routeAction$(async (_, event) => {
  const r = await run(
    clientOf(event).call(Api.WorkspaceEndpoints.deleteWorkspace, { params: { workspaceId: event.params.workspaceId! } })
  )
  return Either.isLeft(r) ? event.fail(r.left.status || 502, { message: r.left.message }) : { message: "Deleting." }
})

export default component$(() => {
  const data = useWorkspace()
  const stop = useStop()
  const del = useDelete()
  const me = useMe()
  const { workspace: w, lines, nodeBoot } = data.value
  // a workspace without a task (none in normal use) keeps its buttons: the API decides
  const mayEnd = data.value.owner || data.value.submitter === null || data.value.submitter === me.value.userId
  return (
    <main class="page">
      <div class="page-narrow">
        <div class="row">
          <h1 class="mono" style={{ flex: 1, fontSize: "var(--text-lg)" }}>
            {w.id}
          </h1>
          {mayEnd && <ConfirmAction action={stop} label="Stop" confirm="Stop this workspace?" />}
          {mayEnd && <ConfirmAction action={del} label="Delete" confirm="Delete this workspace and its files?" />}
        </div>
        {(stop.value?.message || del.value?.message) && <p class="hint">{stop.value?.message ?? del.value?.message}</p>}
        <section class="glass card row">
          <span class="badge">{w.status}</span>
          <span class="badge">{w.runtime ?? "—"}</span>
          {w.nodeId && (
            <Link class="badge" href={`/nodes/${w.nodeId}`}>
              {w.nodeId}
            </Link>
          )}
          <Link class="badge" href={`/projects/${w.projectId}/chat`}>
            project
          </Link>
          {w.errorReason && <span class="field-error">{w.errorReason}</span>}
        </section>
        <section class="glass card stack">
          <h2>Boot log</h2>
          {lines.length === 0 ? (
            <p class="hint">No boot log yet.</p>
          ) : (
            <pre class="secret" style={{ margin: 0, maxHeight: "60vh", overflow: "auto" }} data-testid="bootlog">
              {lines
                .map((l) => `${new Date(l.at).toLocaleTimeString()}  ${l.step}  ${l.status}  ${l.message}`)
                .join("\n")}
            </pre>
          )}
        </section>
        {w.nodeId && (
          <NodeBootLog key={w.nodeId} nodeId={w.nodeId} initial={nodeBoot} live={false} title="Its node's boot log" />
        )}
      </div>
    </main>
  )
})

export const head: DocumentHead = { title: "Workspace" }
