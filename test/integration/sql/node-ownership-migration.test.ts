import { Migrator, SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { makeId } from "@sam/bus"
import { Migrations } from "@sam/sql"
import { Effect, Layer } from "effect"
import { expect } from "vitest"
import { freshDatabase, sqlLayer } from "../../src/Env.js"

const EmptyDatabase = Layer.unwrapEffect(Effect.promise(freshDatabase).pipe(Effect.map(sqlLayer)))

/** The ledger as it was before 0007. */
const migrateBefore0007 = Migrator.make({})({
  loader: Migrator.fromRecord(
    Object.fromEntries(Object.entries(Migrations.migrations).filter(([name]) => name < "0007"))
  ),
  table: "sam_migrations"
})

layer(EmptyDatabase, { excludeTestServices: true, timeout: 30_000 })("migration 0007", (it) => {
  it.effect(
    "an existing node gets the submitter of its first task, else its first project's owner; an idle one none",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* migrateBefore0007
        const [alice, bob] = [makeId("user"), makeId("user")]
        const [aliceProject, bobProject] = [makeId("proj"), makeId("proj")]
        const [shared, bobs, idle] = [makeId("node"), makeId("node"), makeId("node")]
        yield* sql`INSERT INTO users (id, display_name) VALUES (${alice}, 'Alice'), (${bob}, 'Bob')`
        yield* sql`INSERT INTO projects (id, owner_id, name, repo_url)
          VALUES (${aliceProject}, ${alice}, 'a', '/a'), (${bobProject}, ${bob}, 'b', '/b')`
        yield* sql`INSERT INTO nodes (id, provider, status)
          VALUES (${shared}, 'local', 'running'), (${bobs}, 'local', 'running'), (${idle}, 'local', 'running')`
        // The shared node: Alice's task came first, then one of Bob's (a member of her project).
        yield* sql`INSERT INTO tasks (id, project_id, created_by, prompt, node_id, created_at) VALUES
          (${makeId("task")}, ${aliceProject}, ${bob}, 'later', ${shared}, now()),
          (${makeId("task")}, ${aliceProject}, ${alice}, 'first', ${shared}, now() - interval '1 hour')`
        // Bob's node hosts a workspace of his project and no task.
        yield* sql`INSERT INTO workspaces (id, project_id, node_id, status) VALUES (${makeId("ws")}, ${bobProject}, ${bobs}, 'running')`

        yield* Migrations.migrate()
        const owners = yield* sql<{ id: string; ownerId: string | null }>`
          SELECT id, owner_id FROM nodes WHERE id IN ${sql.in([shared, bobs, idle])}`
        expect(Object.fromEntries(owners.map((n) => [n.id, n.ownerId]))).toEqual({
          [shared]: alice,
          [bobs]: bob,
          [idle]: null
        })
      })
  )
})
