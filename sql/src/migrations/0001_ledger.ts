import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The first ledger tables. Statuses are check constraints (design §6), so a row with an illegal
 * status cannot exist whatever code wrote it. Transition rules live in the actors.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE users (
      id text PRIMARY KEY CHECK (id ~ '^user_[0-9a-z]+$'),
      email text UNIQUE,
      display_name text NOT NULL,
      github_login text UNIQUE,
      created_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`
    CREATE TABLE projects (
      id text PRIMARY KEY CHECK (id ~ '^proj_[0-9a-z]+$'),
      owner_id text NOT NULL REFERENCES users(id),
      name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
      repo_url text NOT NULL,
      default_branch text NOT NULL DEFAULT 'main',
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`
    CREATE TABLE project_members (
      project_id text NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
      user_id text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      role text NOT NULL CHECK (role IN ('owner', 'member')),
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (project_id, user_id)
    )`
  yield* sql`
    CREATE TABLE nodes (
      id text PRIMARY KEY CHECK (id ~ '^node_[0-9a-z]+$'),
      owner_id text REFERENCES users(id),
      provider text NOT NULL CHECK (provider IN ('local', 'hetzner')),
      status text NOT NULL DEFAULT 'provisioning'
        CHECK (status IN ('provisioning', 'running', 'warm', 'destroying', 'deleted', 'error')),
      health text NOT NULL DEFAULT 'stale' CHECK (health IN ('healthy', 'stale', 'unhealthy')),
      provider_request_id text,
      agent_ready_at timestamptz,
      last_heartbeat_at timestamptz,
      capabilities jsonb NOT NULL DEFAULT '{}'::jsonb,
      error_reason text,
      version integer NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`
    CREATE TABLE tasks (
      id text PRIMARY KEY CHECK (id ~ '^task_[0-9a-z]+$'),
      project_id text NOT NULL REFERENCES projects(id),
      created_by text NOT NULL REFERENCES users(id),
      prompt text NOT NULL,
      agent text NOT NULL DEFAULT 'demo',
      mode text NOT NULL DEFAULT 'task' CHECK (mode IN ('task', 'conversation')),
      status text NOT NULL DEFAULT 'draft'
        CHECK (status IN ('draft', 'ready', 'queued', 'delegated', 'in_progress', 'completed', 'failed', 'cancelled')),
      execution_step text CHECK (execution_step IN (
        'node_selection', 'waiting_for_node_capacity', 'node_provisioning', 'node_agent_ready',
        'workspace_creation', 'workspace_dispatch', 'workspace_ready', 'agent_session', 'running',
        'awaiting_followup')),
      error_step text,
      error_reason text,
      node_id text REFERENCES nodes(id),
      workspace_id text,
      session_id text,
      branch text,
      version integer NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`CREATE INDEX tasks_project_status ON tasks (project_id, status)`
  yield* sql`
    CREATE TABLE task_status_events (
      id bigserial PRIMARY KEY,
      task_id text NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
      from_status text,
      to_status text NOT NULL
        CHECK (to_status IN ('draft', 'ready', 'queued', 'delegated', 'in_progress', 'completed', 'failed', 'cancelled')),
      actor text NOT NULL,
      reason text,
      at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`CREATE INDEX task_status_events_task ON task_status_events (task_id, id)`
  yield* sql`
    CREATE TABLE workspaces (
      id text PRIMARY KEY CHECK (id ~ '^ws_[0-9a-z]+$'),
      project_id text NOT NULL REFERENCES projects(id),
      node_id text REFERENCES nodes(id),
      task_id text REFERENCES tasks(id),
      status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'creating', 'running', 'recovery', 'sleeping', 'stopping', 'stopped', 'deleted', 'error')),
      runtime text CHECK (runtime IN ('docker', 'host')),
      dispatched_at timestamptz,
      error_reason text,
      version integer NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`CREATE INDEX workspaces_node ON workspaces (node_id)`
  yield* sql`
    CREATE TABLE sessions (
      id text PRIMARY KEY CHECK (id ~ '^sess_[0-9a-z]+$'),
      project_id text NOT NULL REFERENCES projects(id),
      workspace_id text REFERENCES workspaces(id),
      task_id text REFERENCES tasks(id),
      agent text NOT NULL,
      status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'sleeping', 'stopped', 'failed')),
      acp_session_id text,
      last_seq bigint NOT NULL DEFAULT 0,
      error_reason text,
      version integer NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`CREATE INDEX sessions_project ON sessions (project_id, status)`
  yield* sql`
    CREATE TABLE session_events (
      session_id text NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
      seq bigint NOT NULL CHECK (seq > 0),
      type text NOT NULL,
      payload jsonb NOT NULL,
      at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (session_id, seq)
    )`
})
