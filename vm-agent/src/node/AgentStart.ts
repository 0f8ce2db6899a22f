import { existsSync } from "node:fs"
import { join } from "node:path"
import { Api, Domain } from "@sam/bus"
import { Effect } from "effect"
import type { HarnessCommand } from "../acp/HarnessCommand.js"
import { AGENTS_IN_CONTAINER, agentCacheDir, launchFilePath, realAgentCommand } from "../acp/Harnesses.js"
import { demoAgentBundle, demoAgentCommand, demoAgentCommandInContainer } from "../demo/DemoAgentCommand.js"
import { DEMO_AGENT_IN_CONTAINER, NODE_IN_CONTAINER } from "../runtime/DockerRuntime.js"
import type { WorkspaceInfo, WorkspaceRuntimeService } from "../runtime/WorkspaceRuntime.js"
import type { NodeKey } from "./NodeKey.js"
import type { SessionRecord } from "./SessionRecords.js"

export interface StartRefusal {
  readonly code: "unavailable"
  readonly message: string
  /** a failure that may pass (the runtime's I/O): the command is tried again, not refused */
  readonly retry?: boolean
}

const refuse = (message: string) => Effect.fail<StartRefusal>({ code: "unavailable", message })

const WRITE_FILE = 'umask 077 && mkdir -p -- "$(dirname -- "$1")" && cat > "$1"'

/**
 * What a session's agent starts as (ADR 0024): the launch the control plane sealed to this node is opened here,
 * its files are written into the workspace as the workspace's user (0600; `~/…` in its home, else in the
 * checkout), and its variables go to the agent's process only, never to the workspace's env file. A real agent
 * needs its launch (it holds the credential) and its pinned install in the node's cache.
 */
export const agentStart = (options: {
  readonly record: SessionRecord
  readonly workspace: WorkspaceInfo
  readonly runtime: WorkspaceRuntimeService
  readonly key: NodeKey | undefined
  /** the agent's own state: the demo agent keeps its sessions there */
  readonly stateDir: string
  /** the workspace is still created (ADR 0037): files of the launch that go into the checkout wait for this */
  readonly checkoutReady?: Effect.Effect<void, StartRefusal>
}) =>
  Effect.gen(function* () {
    const { record, workspace } = options
    const sealed = record.launch
    const launch =
      sealed === undefined || options.key === undefined
        ? undefined
        : Domain.AgentLaunch.openLaunch(sealed, options.key.seed)
    if (sealed !== undefined && launch === undefined)
      return yield* refuse("the session's launch was not sealed for this node's key; start a new session")
    if (launch?.unavailable !== undefined) return yield* refuse(launch.unavailable)
    const inContainer = workspace.runtime === "docker"
    const write = (files: ReadonlyArray<{ path: string; content: string }>) =>
      Effect.zipRight(
        files.some((file) => !file.path.startsWith("~/")) ? (options.checkoutReady ?? Effect.void) : Effect.void,
        Effect.forEach(
          files,
          (file) =>
            options.runtime
              .exec(
                record.workspaceId,
                ["/bin/sh", "-c", WRITE_FILE, "sh", launchFilePath(file.path, workspace.path, workspace.home)],
                { stdin: file.content }
              )
              .pipe(
                Effect.mapError(
                  (e): StartRefusal => ({
                    code: "unavailable",
                    message: `cannot write ${file.path}: ${e.message}`,
                    retry: e._tag === "RuntimeFailure"
                  })
                ),
                Effect.flatMap((result) =>
                  result.exitCode === 0
                    ? Effect.void
                    : refuse(`cannot write ${file.path}: ${result.stderr.trim().slice(0, 300)}`)
                )
              ),
          { discard: true }
        )
      )
    const promptAppend = launch?.systemPromptAppend
    if (record.agent === "demo") {
      // a container has the bundle only, never the sources and node_modules tsx would run (ADR 0049)
      if (inContainer && !existsSync(demoAgentBundle()))
        return yield* refuse(
          `the demo agent runs in a container from its compiled bundle, and there is none at ${demoAgentBundle()}: build it with \`node infra/build.mjs\` (./sam does)`
        )
      yield* write(launch?.files ?? [])
      const env = { ...launch?.env, SAM_DEMO_AGENT_STATE_DIR: options.stateDir }
      const command: HarnessCommand = inContainer
        ? demoAgentCommandInContainer({
            node: NODE_IN_CONTAINER,
            bundle: DEMO_AGENT_IN_CONTAINER,
            cwd: workspace.path,
            env
          })
        : demoAgentCommand({ cwd: workspace.path, env })
      return { command, promptAppend }
    }
    const harness = Api.Harnesses[record.agent]
    if (launch === undefined)
      return yield* refuse(
        `${harness.name} needs its credential, and the control plane sent none this node can open (a vm-agent without a key announced in its heartbeat)`
      )
    const cache = agentCacheDir()
    const dir = Api.harnessDir(cache, harness)!
    if (!existsSync(join(dir, harness.package!.entry)))
      return yield* refuse(
        `${harness.name} (${harness.package!.name}@${harness.package!.version}) is not installed on this node: run \`sam agents install ${harness.id}\``
      )
    yield* write(launch.files)
    const command = realAgentCommand({
      agent: record.agent,
      launch,
      cache: inContainer ? AGENTS_IN_CONTAINER : cache,
      node: inContainer ? NODE_IN_CONTAINER : process.execPath,
      cwd: workspace.path,
      home: workspace.home
    })
    return { command, promptAppend }
  })

export const withPromptAppend = (prompt: string, append: string | undefined) =>
  append === undefined ? prompt : `${prompt}\n\n${append}`
