// The CLI's gateway client commands alone (ClientCommands.ts), bundled by build.mjs into one CommonJS file,
// dist/client.cjs, that `./sam` runs through infra/run-cached.cjs with V8's code cache: such a command
// neither compiles the CLI's other code nor, after its first run, its own (issue 12: `sam task list`).
import { Effect } from "effect"
import * as AgentCli from "./AgentCli.js"
import * as ApiCli from "./ApiCli.js"
import { type ClientModules, clientCommand } from "./ClientCommands.js"
import { runCli } from "./CliMain.js"
import * as CloudCli from "./CloudCli.js"
import * as NodeCli from "./NodeCli.js"
import { StackError } from "./StackError.js"
import * as TaskCli from "./TaskCli.js"

const modules: ClientModules = {
  taskCli: async () => TaskCli,
  apiCli: async () => ApiCli,
  agentCli: async () => AgentCli,
  cloudCli: async () => CloudCli,
  nodeCli: async () => NodeCli
}

runCli(
  ([command, ...rest]) =>
    clientCommand(modules, command, rest) ??
    Effect.fail(
      new StackError({ step: "cli", message: `${command ?? "(none)"} is not a client command; run: node dist/cli.mjs` })
    )
)
