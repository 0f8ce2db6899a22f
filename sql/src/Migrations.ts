import { Migrator } from "@effect/sql"
import { Effect } from "effect"
import ledger from "./migrations/0001_ledger.js"
import actorRuntime from "./migrations/0002_actor_runtime.js"
import sessions from "./migrations/0003_sessions.js"
import tasks from "./migrations/0004_tasks.js"
import gateway from "./migrations/0005_gateway.js"
import bootlog from "./migrations/0006_bootlog.js"
import nodeOwnership from "./migrations/0007_node_ownership.js"
import natsAccounts from "./migrations/0008_nats_accounts.js"
import permissions from "./migrations/0009_permissions.js"
import nodeCapacity from "./migrations/0010_node_capacity.js"
import agentSettings from "./migrations/0011_agent_settings.js"
import githubInstallations from "./migrations/0012_github_installations.js"
import cloudNodes from "./migrations/0013_cloud_nodes.js"
import nodeBoot from "./migrations/0014_node_boot.js"
import githubRepositories from "./migrations/0015_github_repositories.js"
import messageTrace from "./migrations/0016_message_trace.js"
import nodeBootKeys from "./migrations/0017_node_boot_keys.js"
import inboxRetention from "./migrations/0018_inbox_retention.js"
import sessionsByWorkspace from "./migrations/0019_sessions_by_workspace.js"
import sessionsRecentlyChanged from "./migrations/0020_sessions_recently_changed.js"
import sessionUsage from "./migrations/0021_session_usage.js"
import traceContext from "./migrations/0022_trace_context.js"
import commitCheck from "./migrations/0023_commit_check.js"

/**
 * Forward-only migrations, numbered. Append a new entry to change the schema; never edit one that
 * has shipped. Applied in order at start-up inside one transaction that holds a table lock, so two
 * processes starting together do not both apply them.
 */
export const migrations = {
  "0001_ledger": ledger,
  "0002_actor_runtime": actorRuntime,
  "0003_sessions": sessions,
  "0004_tasks": tasks,
  "0005_gateway": gateway,
  "0006_bootlog": bootlog,
  "0007_node_ownership": nodeOwnership,
  "0008_nats_accounts": natsAccounts,
  "0009_permissions": permissions,
  "0010_node_capacity": nodeCapacity,
  "0011_agent_settings": agentSettings,
  "0012_github_installations": githubInstallations,
  "0013_cloud_nodes": cloudNodes,
  "0014_node_boot": nodeBoot,
  "0015_github_repositories": githubRepositories,
  "0016_message_trace": messageTrace,
  "0017_node_boot_keys": nodeBootKeys,
  "0018_inbox_retention": inboxRetention,
  "0019_sessions_by_workspace": sessionsByWorkspace,
  "0020_sessions_recently_changed": sessionsRecentlyChanged,
  "0021_session_usage": sessionUsage,
  "0022_trace_context": traceContext,
  "0023_commit_check": commitCheck
}

const migrator = Migrator.make({})

/** Apply what is missing; returns the `[id, name]` pairs applied now (empty when up to date). */
export const migrate = Effect.fn("Sql.migrate")(function* () {
  return yield* migrator({ loader: Migrator.fromRecord(migrations), table: "sam_migrations" })
})
