import { Effect } from "effect"
import { type ClientModules, clientCommand } from "./ClientCommands.js"
import { runCli } from "./CliMain.js"
import { StackError } from "./StackError.js"
import { AGENT_USAGE_LINES, CLOUD_USAGE_LINES } from "./Usage.js"

const USAGE = `usage: sam <command>

  up                     start the local stack (NATS, Postgres, the control plane, the gateway, local nodes)
                         until Ctrl-C; the first run prints the owner account's password once
  owner password         set a new password for the local owner account (printed once)

through the HTTP API (token: SAM_TOKEN or .sam/cli.token; errors print as "✗ <code>: <message>"; P is a
project's id or its name):
  project create --repo R [--name N] [--branch B] | project list | project get|members proj_…
  task create --project P --prompt "…" [--agent demo] [--profile prof_…] [--mode task|conversation]
                         submit a task and print what the agent does until it ends or awaits a follow-up
  task list [--project P] [--status S] | task get|cancel|retry|trace task_…
  session prompt sess_… "…" | session cancel|stop sess_…
  session watch sess_…   the transcript so far, then live events until Ctrl-C
  session answer sess_… [perm_… OPTION|cancelled]
                         the agent's permission requests waiting for an answer, or answer one
  token create NAME [--days N] | token list | token revoke tok_…
                         API tokens (create prints the token once)
  creds user [--out F] [--hours N]
                         NATS credentials for your API token, for \`nats req\` (default .sam/user.creds;
                         12 hours, at most 24; revoking the token revokes them at once)
  notifications [--unread] | nodes | workspaces --project P
  node token             a join token (one use, minutes) and the one-line command that makes a machine your node
  node join URL TOKEN [--dir D] [--runtime auto|docker|host] | node run [--dir D]
                         make this machine a node of the token's user (foreground; ADR 0027)
${AGENT_USAGE_LINES}
${CLOUD_USAGE_LINES}

operator tools (direct access to NATS and Postgres):
  creds ops [--out F] [--days N]
                         write a .creds file for the NATS CLI (default .sam/ops.creds, 30 days)
  actors                 the actor runtime's shard owners, epochs, pending commands and dead letters
  test                   run the whole test suite (lint, types, tests) on servers of its own

environment: SAM_DATA_DIR (.sam), SAM_NATS_PORT (4222), SAM_PG_PORT (54320), SAM_GATEWAY_PORT (8080),
  SAM_GATEWAY_URL (http://127.0.0.1:$SAM_GATEWAY_PORT), SAM_TOKEN (an API token instead of .sam/cli.token)`

/** A command's module, loaded when that command runs: each command loads only what it needs. */
const lazy = <M>(load: () => Promise<M>) => Effect.promise(load)
const stackCli = lazy(() => import("./StackCli.js"))
const clientModules: ClientModules = {
  taskCli: () => import("./TaskCli.js"),
  apiCli: () => import("./ApiCli.js"),
  agentCli: () => import("./AgentCli.js"),
  cloudCli: () => import("./CloudCli.js"),
  nodeCli: () => import("./NodeCli.js")
}

const main = (args: ReadonlyArray<string>): Effect.Effect<void, StackError> => {
  const [command, ...rest] = args
  const client = clientCommand(clientModules, command, rest)
  if (client !== undefined) return client
  switch (command) {
    case "up":
      return Effect.flatMap(stackCli, (m) => m.up)
    case "owner":
      return rest[0] === "password"
        ? Effect.flatMap(stackCli, (m) => m.ownerPassword)
        : Effect.fail(new StackError({ step: "cli", message: "usage: sam owner password" }))
    case "actors":
      return Effect.flatMap(
        Effect.promise(() => import("./ActorsStatus.js")),
        (module) => module.actorsStatus
      )
    case "creds":
      if (rest[0] === "ops") return Effect.flatMap(stackCli, (m) => m.credsOps(rest.slice(1)))
      return Effect.fail(
        new StackError({ step: "cli", message: `unknown creds kind ${rest[0] ?? "(none)"}; try: sam creds user|ops` })
      )
    case undefined:
    case "help":
    case "--help":
      return Effect.sync(() => process.stdout.write(`${USAGE}\n`))
    default:
      return Effect.fail(new StackError({ step: "cli", message: `unknown command ${command}\n\n${USAGE}` }))
  }
}

runCli(main)
