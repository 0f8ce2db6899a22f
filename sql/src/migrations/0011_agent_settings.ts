import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Agent credentials per user, agent profiles per project, and runtime variables and files of projects and
 * profiles (ADR 0024). Every credential and every secret runtime value is AES-256-GCM ciphertext (`SecretBox`);
 * a non-secret runtime value is kept as it is. `task_agent_profiles` remembers which profile a task was
 * submitted with, so that its session starts with that profile's settings.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE agent_credentials (
      user_id text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      agent text NOT NULL,
      kind text NOT NULL CHECK (kind IN ('api-key', 'oauth-token', 'auth-file')),
      sealed text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (user_id, agent)
    )`
  yield* sql`
    CREATE TABLE agent_profiles (
      id text PRIMARY KEY CHECK (id ~ '^prof_[0-9a-z]+$'),
      project_id text NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
      created_by text NOT NULL REFERENCES users(id),
      name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
      agent text NOT NULL,
      model text,
      permission_mode text NOT NULL DEFAULT 'ask' CHECK (permission_mode IN ('ask', 'allow-edits', 'allow-all')),
      system_prompt_append text,
      task_mode text NOT NULL DEFAULT 'task' CHECK (task_mode IN ('task', 'conversation')),
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (project_id, name)
    )`
  // One table per kind of asset for both levels: `profile_id` is null for the project's own.
  yield* sql`
    CREATE TABLE runtime_env_vars (
      project_id text NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
      profile_id text REFERENCES agent_profiles(id) ON DELETE CASCADE,
      env_key text NOT NULL,
      value text NOT NULL,
      is_secret boolean NOT NULL DEFAULT false,
      updated_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`CREATE UNIQUE INDEX runtime_env_vars_key ON runtime_env_vars (project_id, coalesce(profile_id, ''), env_key)`
  yield* sql`
    CREATE TABLE runtime_files (
      project_id text NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
      profile_id text REFERENCES agent_profiles(id) ON DELETE CASCADE,
      file_path text NOT NULL,
      content text NOT NULL,
      is_secret boolean NOT NULL DEFAULT false,
      updated_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`CREATE UNIQUE INDEX runtime_files_path ON runtime_files (project_id, coalesce(profile_id, ''), file_path)`
  yield* sql`
    CREATE TABLE task_agent_profiles (
      task_id text PRIMARY KEY,
      profile_id text NOT NULL REFERENCES agent_profiles(id) ON DELETE CASCADE
    )`
})
