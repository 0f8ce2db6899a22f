import { Effect, Layer } from "effect"
import { type DockerRuntimeOptions, makeDockerRuntime, probeDocker } from "./DockerRuntime.js"
import { startHostRuntime } from "./HostRuntime.js"
import { WorkspaceRuntime } from "./WorkspaceRuntime.js"

export * from "./DockerRuntime.js"
export * from "./HostRuntime.js"
export * from "./WorkspaceRuntime.js"

/** The vm-agent's runtime: Docker when an engine with the workspace image answers, else host processes. */
export const chooseRuntime = Effect.fn("WorkspaceRuntime.choose")(function* (options: DockerRuntimeOptions) {
  const capabilities = yield* probeDocker(options)
  if (capabilities.docker) return makeDockerRuntime(options)
  return yield* startHostRuntime({ dataDir: options.dataDir })
})

export const layerAuto = (options: DockerRuntimeOptions) => Layer.effect(WorkspaceRuntime, chooseRuntime(options))
