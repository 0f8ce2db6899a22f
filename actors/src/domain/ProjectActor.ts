import { SqlClient } from "@effect/sql"
import { Domain, defineMessage, ProjectId } from "@sam/bus"
import { Effect } from "effect"
import { z } from "zod"
import * as Actor from "../ActorKind.js"
import { ProjectRef } from "./Kinds.js"

const { ControlProtocol: C } = Domain

export const ProjectCreated = defineMessage(
  "project.created",
  z.object({ projectId: z.string(), name: z.string(), repoUrl: z.string() }),
  { durable: true }
)

interface Row {
  readonly id: string
  readonly ownerId: string
  readonly name: string
  readonly repoUrl: string
  readonly defaultBranch: string
}
interface State {
  readonly row: Row | null
  readonly created: boolean
}

/**
 * A project: a Git repository by URL, with its owner as its first member. Creating one twice with
 * the same id is a no-op that says so; settings and membership changes come with the gateway.
 */
export const ProjectKind = Actor.make({
  ...ProjectRef,
  id: ProjectId,
  commands: C.projectCommands.defs,
  load: (id) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql<Row>`
        SELECT id, owner_id, name, repo_url, default_branch FROM projects WHERE id = ${id} FOR UPDATE`
      const state: State = { row: rows[0] ?? null, created: false }
      return state
    }),
  save: (_id, state) =>
    Effect.gen(function* () {
      const row = state.row
      if (!state.created || row === null) return
      const sql = yield* SqlClient.SqlClient
      yield* sql`
        INSERT INTO projects (id, owner_id, name, repo_url, default_branch)
        VALUES (${row.id}, ${row.ownerId}, ${row.name}, ${row.repoUrl}, ${row.defaultBranch})`
      yield* sql`INSERT INTO project_members (project_id, user_id, role) VALUES (${row.id}, ${row.ownerId}, 'owner')`
    }),
  handle: (state, command) => {
    const b = command.body
    if (state.row !== null) {
      return Effect.succeed({ state, reply: { ok: true, duplicate: true, projectId: state.row.id } })
    }
    const row: Row = {
      id: b.projectId,
      ownerId: b.ownerId,
      name: b.name,
      repoUrl: b.repoUrl,
      defaultBranch: b.defaultBranch
    }
    return Effect.succeed({
      state: { ...state, row, created: true },
      events: [
        Actor.event(
          row.id,
          "project",
          row.id,
          ProjectCreated.make({ projectId: row.id, name: row.name, repoUrl: row.repoUrl })
        )
      ],
      reply: { ok: true, projectId: row.id }
    })
  }
})
