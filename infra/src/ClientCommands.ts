import { Effect } from "effect"
import { StackError } from "./StackError.js"

const asStackError = (step: string) => (error: unknown) =>
  error instanceof StackError
    ? error
    : new StackError({ step, message: error instanceof Error ? error.message : String(error), cause: error })

/**
 * The modules of the client commands: the full CLI (cli.ts) loads each when its command runs, the client
 * bundle (client.ts) has them in it. A bundle of CommonJS could not drop the parts of Effect these modules
 * do not use had they been imported dynamically (as it wraps each such module whole).
 */
export interface ClientModules {
  readonly taskCli: () => Promise<typeof import("./TaskCli.js")>
  readonly apiCli: () => Promise<typeof import("./ApiCli.js")>
  readonly agentCli: () => Promise<typeof import("./AgentCli.js")>
  readonly cloudCli: () => Promise<typeof import("./CloudCli.js")>
  readonly nodeCli: () => Promise<typeof import("./NodeCli.js")>
}

/**
 * The commands that call a gateway's HTTP API and feed (`sam task list`, …) and need nothing of the local
 * stack's code (`agents install` also fills the agent cache, `node join|run` also starts this machine's
 * vm-agent), or undefined for any other. `./sam` runs them from their own bundle, dist/client.cjs, with V8's
 * code cache (client.ts).
 */
export const clientCommand = (
  modules: ClientModules,
  command: string | undefined,
  rest: ReadonlyArray<string>
): Effect.Effect<void, StackError> | undefined => {
  const apiCli = (command: string, rest: ReadonlyArray<string>) =>
    Effect.flatMap(Effect.promise(modules.apiCli), (m) => m.run(command, rest)).pipe(
      Effect.mapError(asStackError(command))
    )
  switch (command) {
    case "task":
      return Effect.flatMap(Effect.promise(modules.taskCli), (m) => m.task(rest)).pipe(
        Effect.mapError(asStackError("task"))
      )
    case "session":
      return Effect.flatMap(Effect.promise(modules.taskCli), (m) => m.session(rest)).pipe(
        Effect.mapError(asStackError("session"))
      )
    case "creds":
      return rest[0] === "user" ? apiCli(command, rest) : undefined
    case "agents":
      return Effect.flatMap(Effect.promise(modules.agentCli), (m) => m.agents(rest))
    case "cloud":
      return Effect.flatMap(Effect.promise(modules.cloudCli), (m) => m.cloud(rest))
    case "node":
      return Effect.flatMap(Effect.promise(modules.nodeCli), (m) => m.node(rest))
    case "project":
    case "token":
    case "notifications":
    case "nodes":
    case "workspaces":
      return apiCli(command, rest)
    default:
      return undefined
  }
}
