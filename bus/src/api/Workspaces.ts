import { z } from "zod"
import { BootLog } from "../domain/NodeProtocol.js"
import { WorkspaceRow } from "../domain/Rows.js"
import { ProjectId, WorkspaceId } from "../Ids.js"
import { endpoint } from "./Endpoint.js"
import { limit } from "./Paging.js"

/** A workspace: a checkout of the project's repository on a node, where a task's agent runs. */
export const Workspace = WorkspaceRow.extend({
  /** when its create command was handed to its node; null until then */
  dispatchedAt: z.iso.datetime().nullable(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime()
})
export type Workspace = z.infer<typeof Workspace>

export const ListWorkspacesQuery = z.object({ limit: limit(50, 200), before: WorkspaceId.optional() })
export const WorkspaceList = z.object({ workspaces: z.array(Workspace), nextBefore: WorkspaceId.nullable() })

/** One line of a workspace's boot log, as its node reported it; `seq` orders lines and pages them. */
export const BootLogLine = BootLog.body.omit({ workspaceId: true }).extend({
  seq: z.number().int().positive(),
  at: z.iso.datetime()
})
export const BootLogQuery = z.object({
  afterSeq: z.coerce.number().int().nonnegative().default(0),
  limit: limit(500, 1000)
})
export const BootLogPage = z.object({
  workspaceId: WorkspaceId,
  lines: z.array(BootLogLine),
  /** ask again with `afterSeq` = this for the next page; null when this page reached the end */
  nextAfterSeq: z.number().int().nonnegative().nullable()
})

/** What a stop or delete did: the workspace as it is now; the node reports the outcome on the feed. */
export const WorkspaceChange = z.object({ workspace: Workspace, accepted: z.literal(true) })

const ProjectParams = z.object({ projectId: ProjectId })
const WorkspaceParams = z.object({ workspaceId: WorkspaceId })

export const WorkspaceEndpoints = {
  listWorkspaces: endpoint({
    method: "GET",
    path: "/projects/:projectId/workspaces",
    summary: "A project's workspaces, newest first",
    tag: "workspaces",
    params: ProjectParams,
    query: ListWorkspacesQuery,
    response: WorkspaceList
  }),
  getWorkspace: endpoint({
    method: "GET",
    path: "/workspaces/:workspaceId",
    summary: "One workspace",
    tag: "workspaces",
    params: WorkspaceParams,
    response: Workspace
  }),
  workspaceBootLog: endpoint({
    method: "GET",
    path: "/workspaces/:workspaceId/bootlog",
    summary: "A page of a workspace's boot log (clone, setup…), oldest first",
    tag: "workspaces",
    params: WorkspaceParams,
    query: BootLogQuery,
    response: BootLogPage
  }),
  stopWorkspace: endpoint({
    method: "POST",
    path: "/workspaces/:workspaceId/stop",
    summary:
      "Stop a workspace's processes and keep its files; its sessions stop and its task is cancelled (its task's submitter or a project owner)",
    tag: "workspaces",
    params: WorkspaceParams,
    response: WorkspaceChange,
    status: 202
  }),
  deleteWorkspace: endpoint({
    method: "DELETE",
    path: "/workspaces/:workspaceId",
    summary:
      "Delete a workspace and its files; its sessions stop and its task is cancelled (its task's submitter or a project owner)",
    tag: "workspaces",
    params: WorkspaceParams,
    response: WorkspaceChange,
    status: 202
  })
}
