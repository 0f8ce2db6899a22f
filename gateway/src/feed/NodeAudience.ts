import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

const TTL_MS = 5_000

/**
 * Who may see a node's events: its owner and the members of every project with a workspace on it
 * (the same rule as `Access.requireNodeVisible`). Node events are rare, so a short cache is enough.
 */
export const make = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const cache = new Map<string, { readonly users: ReadonlySet<string>; readonly at: number }>()

  const usersOf = (nodeId: string) =>
    Effect.gen(function* () {
      const hit = cache.get(nodeId)
      if (hit !== undefined && Date.now() - hit.at < TTL_MS) return hit.users
      const rows = yield* sql<{ userId: string }>`
        SELECT owner_id AS user_id FROM nodes WHERE id = ${nodeId} AND owner_id IS NOT NULL
        UNION
        SELECT m.user_id FROM workspaces w JOIN project_members m ON m.project_id = w.project_id
        WHERE w.node_id = ${nodeId}`.pipe(Effect.orDie)
      const users = new Set(rows.map((row) => row.userId))
      if (cache.size > 10_000) cache.clear()
      cache.set(nodeId, { users, at: Date.now() })
      return users as ReadonlySet<string>
    })

  return { usersOf }
})
