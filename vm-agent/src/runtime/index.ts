import { Effect, Layer } from "effect"
import { type DockerRuntimeOptions, makeDockerRuntime, probeDocker } from "./DockerRuntime.js"
import { makeHostRuntime } from "./HostRuntime.js"
import { WorkspaceRuntime } from "./WorkspaceRuntime.js"

export * from "./DockerRuntime.js"
export * from "./HostRuntime.js"
export * from "./WorkspaceRuntime.js"

/** The vm-agent's runtime: Docker when an engine with the workspace image answers, else host processes. */
export const chooseRuntime = Effect.fn("WorkspaceRuntime.choose")(function* (options: DockerRuntimeOptions) {
  const capabilities = yield* probeDocker(options)
  return capabilities.docker ? makeDockerRuntime(options) : makeHostRuntime({ dataDir: options.dataDir })
})

export const layerAuto = (options: DockerRuntimeOptions) => Layer.effect(WorkspaceRuntime, chooseRuntime(options))
