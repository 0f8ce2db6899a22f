import { SqlClient, SqlError } from "@effect/sql"
import { layer } from "@effect/vitest"
import { makeId } from "@sam/bus"
import { Migrations } from "@sam/sql"
import { Effect, Layer } from "effect"
import { expect } from "vitest"
import { freshDatabase, sqlLayer } from "../../src/Env.js"

/** An empty database of its own for this file. */
const EmptyDatabase = Layer.unwrapEffect(Effect.promise(freshDatabase).pipe(Effect.map(sqlLayer)))

const violation = (error: unknown) => {
  if (!(error instanceof SqlError.SqlError)) return undefined
  const cause = error.cause as { code?: string; constraint?: string }
  return { code: cause.code, constraint: cause.constraint }
}

layer(EmptyDatabase, { excludeTestServices: true, timeout: 30_000 })("the ledger", (it) => {
  it.effect("migrations apply to an empty database, then re-run as a no-op", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const before = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'`
      expect(before[0]?.n).toBe(0)

      const applied = yield* Migrations.migrate()
      expect(applied.map(([id, name]) => `${id}_${name}`)).toEqual(
        Object.keys(Migrations.migrations).map((key) => key.replace(/^0+/, ""))
      )
      const tables = yield* sql<{ tablename: string }>`
        SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`
      expect(tables.map((t) => t.tablename)).toEqual(
        expect.arrayContaining([
          "users",
          "projects",
          "project_members",
          "tasks",
          "task_status_events",
          "nodes",
          "workspaces",
          "sessions",
          "session_events"
        ])
      )
      const schemaBefore = yield* sql`SELECT table_name, column_name, data_type FROM information_schema.columns
        WHERE table_schema = 'public' ORDER BY table_name, column_name`

      expect(yield* Migrations.migrate()).toEqual([])
      const schemaAfter = yield* sql`SELECT table_name, column_name, data_type FROM information_schema.columns
        WHERE table_schema = 'public' ORDER BY table_name, column_name`
      expect(schemaAfter).toEqual(schemaBefore)
    })
  )

  it.effect("the database refuses an illegal status, and the row is unchanged", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const user = makeId("user")
      const project = makeId("proj")
      const task = makeId("task")
      yield* sql`INSERT INTO users (id, display_name) VALUES (${user}, 'Ada')`
      yield* sql`INSERT INTO projects (id, owner_id, name, repo_url) VALUES (${project}, ${user}, 'p', 'file:///r')`
      yield* sql`INSERT INTO tasks (id, project_id, created_by, prompt) VALUES (${task}, ${project}, ${user}, 'hi')`

      const illegal = yield* sql`UPDATE tasks SET status = 'running' WHERE id = ${task}`.pipe(Effect.flip)
      expect(violation(illegal)).toEqual({ code: "23514", constraint: "tasks_status_check" })
      const badStep = yield* sql`UPDATE tasks SET execution_step = 'teleporting' WHERE id = ${task}`.pipe(Effect.flip)
      expect(violation(badStep)?.code).toBe("23514")
      const [row] = yield* sql<{ status: string; executionStep: string | null }>`
        SELECT status, execution_step FROM tasks WHERE id = ${task}`
      expect(row).toEqual({ status: "draft", executionStep: null })

      const node = makeId("node")
      const badNode = yield* sql`INSERT INTO nodes (id, provider, status) VALUES (${node}, 'local', 'zombie')`.pipe(
        Effect.flip
      )
      expect(violation(badNode)?.constraint).toBe("nodes_status_check")
      const badWorkspace = yield* sql`
        INSERT INTO workspaces (id, project_id, status) VALUES (${makeId("ws")}, ${project}, 'active')`.pipe(
        Effect.flip
      )
      expect(violation(badWorkspace)?.constraint).toBe("workspaces_status_check")
      const badSession = yield* sql`
        INSERT INTO sessions (id, project_id, agent, status) VALUES (${makeId("sess")}, ${project}, 'demo', 'working')`.pipe(
        Effect.flip
      )
      expect(violation(badSession)?.constraint).toBe("sessions_status_check")
      const badEvent = yield* sql`
        INSERT INTO task_status_events (task_id, to_status, actor) VALUES (${task}, 'done', 'test')`.pipe(Effect.flip)
      expect(violation(badEvent)?.code).toBe("23514")
      const wrongId = yield* sql`INSERT INTO users (id, display_name) VALUES ('task_abc', 'Eve')`.pipe(Effect.flip)
      expect(violation(wrongId)?.constraint).toBe("users_id_check")
    })
  )
})
