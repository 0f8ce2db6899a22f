import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Repository access and pull requests (issue 15, ADR 0028). `github_project_repositories` says that a
 * project's repository is reached through a GitHub App installation: its workspaces get installation
 * tokens limited to that one repository, and its tasks in task mode end in a pull request. A pull
 * request opened for a task is recorded on the task and on its session (`pr_url`, `pr_number`);
 * `pr_requested_at` is written before GitHub is asked, so a retry knows to look for the one it may
 * already have opened.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE github_project_repositories (
      project_id text PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
      installation_id bigint NOT NULL REFERENCES github_installation_accounts(installation_id),
      repository_id bigint NOT NULL CHECK (repository_id > 0),
      full_name text NOT NULL CHECK (full_name ~ '^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$'),
      created_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`ALTER TABLE tasks ADD COLUMN pr_url text`
  yield* sql`ALTER TABLE tasks ADD COLUMN pr_number integer`
  yield* sql`ALTER TABLE tasks ADD COLUMN pr_requested_at timestamptz`
  yield* sql`ALTER TABLE sessions ADD COLUMN pr_url text`
})
