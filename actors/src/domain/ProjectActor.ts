import { SqlClient } from "@effect/sql"
import { Domain, ProjectId, TaskId } from "@sam/bus"
import { Effect } from "effect"
import { z } from "zod"
import * as Actor from "../ActorKind.js"
import { ProjectRef, TaskRef } from "./Kinds.js"

const { ControlProtocol: C } = Domain
type Role = Domain.ControlProtocol.MemberRole

export const { ProjectCreated, ProjectMemberAdded, ProjectPermissionsChanged, ProjectMemberRemoved } = Domain

interface Row {
  readonly id: string
  readonly ownerId: string
  readonly name: string
  readonly repoUrl: string
  readonly defaultBranch: string
  readonly permissionPolicy: Domain.ControlProtocol.PermissionPolicy
  readonly permissionTimeoutSeconds: number
}
type MemberChange =
  | { readonly _tag: "Upsert"; readonly userId: string; readonly role: Role }
  | { readonly _tag: "Remove"; readonly userId: string }
interface State {
  readonly row: Row | null
  readonly created: boolean
  readonly members: ReadonlyMap<string, Role>
  /** written by `save`; empty after every load */
  readonly changes: ReadonlyArray<MemberChange>
  /** the permission settings changed (ADR 0018): `save` writes them */
  readonly settingsChanged?: boolean
  /** for `project.remove-member`: that member's tasks in the project that have not ended */
  readonly memberTasks?: ReadonlyArray<TaskId>
}

/** The ids of a member's tasks that have not ended (what their removal cancels). */
const decodeTaskIds = (rows: ReadonlyArray<unknown>) =>
  Domain.Rows.decodeRows(z.object({ id: TaskId }), "task")(rows).map((row) => row.id)
const refuse = (state: State, code: string, message: string) => ({ state, reply: { ok: false, code, message } })
const owners = (members: ReadonlyMap<string, Role>) => [...members.values()].filter((r) => r === "owner").length

/**
 * A project: a Git repository by URL, with its owner as its first member. Creating one twice with
 * the same id is a no-op that says so. Membership changes go through here, one at a time, so two
 * owners removing each other at once cannot leave the project without an owner.
 */
export const ProjectKind = Actor.make({
  ...ProjectRef,
  id: ProjectId,
  commands: C.projectCommands.defs,
  load: (id, command) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql<Row>`
        SELECT id, owner_id, name, repo_url, default_branch, permission_policy, permission_timeout_seconds
        FROM projects WHERE id = ${id} FOR UPDATE`
      const members = yield* sql<{ userId: string; role: Role }>`
        SELECT user_id, role FROM project_members WHERE project_id = ${id}`
      const memberTasks =
        command.type === "project.remove-member"
          ? decodeTaskIds(
              yield* sql`
                SELECT id FROM tasks WHERE project_id = ${id} AND created_by = ${command.body.userId}
                  AND status NOT IN ${sql.in([...Domain.TERMINAL_TASK_STATUSES])}`
            )
          : undefined
      const state: State = {
        row: rows[0] ?? null,
        created: false,
        members: new Map(members.map((m) => [m.userId, m.role])),
        changes: [],
        ...(memberTasks === undefined ? {} : { memberTasks })
      }
      return state
    }),
  save: (_id, state) =>
    Effect.gen(function* () {
      const row = state.row
      if (row === null) return
      const sql = yield* SqlClient.SqlClient
      if (state.created) {
        yield* sql`
          INSERT INTO projects (id, owner_id, name, repo_url, default_branch)
          VALUES (${row.id}, ${row.ownerId}, ${row.name}, ${row.repoUrl}, ${row.defaultBranch})`
        yield* sql`INSERT INTO project_members (project_id, user_id, role) VALUES (${row.id}, ${row.ownerId}, 'owner')`
      }
      if (state.settingsChanged === true && !state.created) {
        yield* sql`
          UPDATE projects SET permission_policy = ${row.permissionPolicy},
            permission_timeout_seconds = ${row.permissionTimeoutSeconds} WHERE id = ${row.id}`
      }
      for (const change of state.changes) {
        if (change._tag === "Upsert") {
          yield* sql`
            INSERT INTO project_members (project_id, user_id, role) VALUES (${row.id}, ${change.userId}, ${change.role})
            ON CONFLICT (project_id, user_id) DO UPDATE SET role = EXCLUDED.role`
        } else {
          yield* sql`DELETE FROM project_members WHERE project_id = ${row.id} AND user_id = ${change.userId}`
        }
      }
    }),
  handle: (state, command) => {
    const row = state.row
    switch (command.type) {
      case "project.create": {
        const b = command.body
        if (row !== null) return Effect.succeed({ state, reply: { ok: true, duplicate: true, projectId: row.id } })
        const created: Row = {
          id: b.projectId,
          ownerId: b.ownerId,
          name: b.name,
          repoUrl: b.repoUrl,
          defaultBranch: b.defaultBranch,
          permissionPolicy: "ask",
          permissionTimeoutSeconds: C.DEFAULT_PERMISSION_TIMEOUT_SECONDS
        }
        return Effect.succeed({
          state: { ...state, row: created, created: true, members: new Map([[b.ownerId, "owner" as const]]) },
          events: [
            Actor.event(
              created.id,
              "project",
              created.id,
              ProjectCreated.make({ projectId: created.id, name: created.name, repoUrl: created.repoUrl })
            )
          ],
          reply: { ok: true, projectId: created.id }
        })
      }
      case "project.add-member": {
        const b = command.body
        if (row === null) return Effect.succeed(refuse(state, "not_found", `no project ${b.projectId}`))
        const current = state.members.get(b.userId)
        if (current === b.role) return Effect.succeed({ state, reply: { ok: true, duplicate: true, role: b.role } })
        const members = new Map(state.members).set(b.userId, b.role)
        if (owners(members) === 0) {
          return Effect.succeed(refuse(state, "last_owner", "the project's only owner cannot stop being an owner"))
        }
        return Effect.succeed({
          state: {
            ...state,
            members,
            changes: [...state.changes, { _tag: "Upsert" as const, userId: b.userId, role: b.role }]
          },
          events: [
            Actor.event(
              row.id,
              "project",
              row.id,
              ProjectMemberAdded.make({ projectId: row.id, userId: b.userId, role: b.role, by: b.by })
            )
          ],
          reply: { ok: true, role: b.role }
        })
      }
      case "project.set-permissions": {
        const b = command.body
        if (row === null) return Effect.succeed(refuse(state, "not_found", `no project ${b.projectId}`))
        const next: Row = {
          ...row,
          permissionPolicy: b.policy ?? row.permissionPolicy,
          permissionTimeoutSeconds: b.timeoutSeconds ?? row.permissionTimeoutSeconds
        }
        return Effect.succeed({
          state: { ...state, row: next, settingsChanged: true },
          events: [
            Actor.event(
              row.id,
              "project",
              row.id,
              ProjectPermissionsChanged.make({
                projectId: row.id,
                policy: next.permissionPolicy,
                timeoutSeconds: next.permissionTimeoutSeconds,
                by: b.by
              })
            )
          ],
          reply: { ok: true }
        })
      }
      case "project.remove-member": {
        const b = command.body
        if (row === null) return Effect.succeed(refuse(state, "not_found", `no project ${b.projectId}`))
        if (!state.members.has(b.userId)) {
          return Effect.succeed(refuse(state, "not_found", `${b.userId} is not a member of ${row.id}`))
        }
        const members = new Map(state.members)
        members.delete(b.userId)
        if (owners(members) === 0) {
          return Effect.succeed(refuse(state, "last_owner", "the project's only owner cannot be removed"))
        }
        // Their work in the project ends with their membership: an agent of theirs still running would go on
        // reading and pushing the project's repository, and writing into its chat, after they lost access.
        const cancel = (state.memberTasks ?? []).map((taskId) =>
          Actor.to(TaskRef, taskId, C.TaskCancel.make({ taskId, reason: "its submitter was removed from the project" }))
        )
        return Effect.succeed({
          state: { ...state, members, changes: [...state.changes, { _tag: "Remove" as const, userId: b.userId }] },
          send: cancel,
          events: [
            Actor.event(
              row.id,
              "project",
              row.id,
              ProjectMemberRemoved.make({ projectId: row.id, userId: b.userId, by: b.by })
            )
          ],
          reply: { ok: true }
        })
      }
    }
  }
})
