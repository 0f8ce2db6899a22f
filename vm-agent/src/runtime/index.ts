import { Effect, Layer } from "effect"
import { type DockerRuntimeOptions, makeDockerRuntime, probeDocker } from "./DockerRuntime.js"
import { makeHostRuntime, NOT_ISOLATED_WARNING } from "./HostRuntime.js"
import { canIsolate } from "./internal/workspaceUser.js"
import { WorkspaceRuntime } from "./WorkspaceRuntime.js"

export * from "./DockerRuntime.js"
export * from "./HostRuntime.js"
export * from "./WorkspaceRuntime.js"

/** The vm-agent's runtime: Docker when an engine with the workspace image answers, else host processes. */
export const chooseRuntime = Effect.fn("WorkspaceRuntime.choose")(function* (options: DockerRuntimeOptions) {
  const capabilities = yield* probeDocker(options)
  if (capabilities.docker) return makeDockerRuntime(options)
  if (!canIsolate()) yield* Effect.logWarning(NOT_ISOLATED_WARNING)
  return makeHostRuntime({ dataDir: options.dataDir })
})

export const layerAuto = (options: DockerRuntimeOptions) => Layer.effect(WorkspaceRuntime, chooseRuntime(options))
