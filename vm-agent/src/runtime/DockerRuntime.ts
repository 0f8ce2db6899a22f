import { existsSync } from "node:fs"
import { join, posix, resolve } from "node:path"
import Docker from "dockerode"
import { Effect, Layer } from "effect"
import { AGENTS_IN_CONTAINER, agentCacheDir } from "../acp/Harnesses.js"
import { demoAgentBundle } from "../demo/DemoAgentCommand.js"
import { type BootLog, lineSplitter } from "./internal/bootLog.js"
import { startExec } from "./internal/dockerExec.js"
import { collect, makeLifecycle, ProvisionError, type Provisioner } from "./internal/lifecycle.js"
import { hashSpec, makeRecords } from "./internal/records.js"
import { localPath, localRepository } from "./internal/repository.js"
import { cloneStallMs, silence } from "./internal/stall.js"
import { tarFiles } from "./internal/tar.js"
import type { Capabilities, WorkspaceRuntimeService } from "./WorkspaceRuntime.js"
import { inCheckout, WorkspaceRuntime } from "./WorkspaceRuntime.js"

/** The image `infra/src/WorkspaceImage.ts` builds (Debian bookworm, git; no node). */
export const DEFAULT_IMAGE = "sam-workspace:2"
const WORKSPACE = "/workspace"
/** where the host's node binary is mounted in a workspace container */
export const NODE_IN_CONTAINER = "/opt/sam/bin/node"
/**
 * What of our code a workspace container has: the demo agent's bundle, one file (ADR 0049). Never the checkout
 * SAM runs from, which holds `./sam up`'s data directory (`.sam`: NATS seeds, credentials, tokens) and `.git`.
 */
export const APP_IN_CONTAINER = "/opt/sam/app"
export const DEMO_AGENT_IN_CONTAINER = `${APP_IN_CONTAINER}/demo-agent.mjs`
const SOURCE = "/opt/sam/source"
/**
 * Who the workspace's processes run as (ADR 0014): not root, so an agent cannot undo the container's limits or read
 * what root-only files a mount shows. No passwd entry is needed; the image has no such user.
 */
export const WORKSPACE_USER = "1000:1000"
const HOME = "/home/sam"
const PATH = "/opt/sam/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

export interface DockerRuntimeOptions {
  /** the node's data directory: workspace records live in `<dataDir>/workspaces/.records` */
  readonly dataDir: string
  /** the engine's socket; default: DOCKER_HOST (unix://…) or /var/run/docker.sock */
  readonly socketPath?: string
  readonly image?: string
  /** mounted read-only at /opt/sam/bin/node: the host's node, which matches the image's glibc */
  readonly nodeBinary?: string
}

export const defaultSocketPath = (env: NodeJS.ProcessEnv = process.env) =>
  env.DOCKER_HOST?.startsWith("unix://") ? env.DOCKER_HOST.slice("unix://".length) : "/var/run/docker.sock"

const step = (name: string) => (cause: unknown) =>
  new ProvisionError({ step: name, message: cause instanceof Error ? cause.message : String(cause) })

const containerName = (workspaceId: string) => `sam-ws-${workspaceId}`

/** Docker answers and has the workspace image: the vm-agent reports this as its `docker` capability. */
export const probeDocker = (options: { readonly socketPath?: string; readonly image?: string } = {}) =>
  Effect.gen(function* () {
    const socketPath = options.socketPath ?? defaultSocketPath()
    const image = options.image ?? DEFAULT_IMAGE
    const docker = new Docker({ socketPath })
    const ping = yield* Effect.tryPromise(() => docker.ping()).pipe(Effect.either)
    if (ping._tag === "Left") {
      return { docker: false, dockerReason: `no Docker engine answers on ${socketPath}`, hostRuntime: true }
    }
    const found = yield* Effect.tryPromise(() => docker.getImage(image).inspect()).pipe(Effect.either)
    if (found._tag === "Left") {
      return { docker: false, dockerReason: `the engine has no image ${image}`, hostRuntime: true }
    }
    return { docker: true, hostRuntime: true, image } satisfies Capabilities
  }).pipe(Effect.withSpan("DockerRuntime.probe")) as Effect.Effect<Capabilities>

export const makeDockerRuntime = (options: DockerRuntimeOptions): WorkspaceRuntimeService => {
  const socketPath = options.socketPath ?? defaultSocketPath()
  const docker = new Docker({ socketPath })
  const image = options.image ?? DEFAULT_IMAGE
  const nodeBinary = options.nodeBinary ?? process.execPath
  const demoAgent = resolve(demoAgentBundle())
  const records = makeRecords(join(resolve(options.dataDir), "workspaces", ".records"))
  const container = (id: string) => docker.getContainer(containerName(id))

  const removeContainer = (id: string) =>
    Effect.tryPromise({
      try: () => container(id).remove({ force: true, v: true }),
      catch: step("delete")
    }).pipe(
      Effect.catchIf(
        (e) => /no such container|404/i.test(e.message),
        () => Effect.void
      )
    )

  /** `stallMs`: stop it, failing, once it wrote nothing for this long (the clone) */
  const inContainer = (id: string, name: string, argv: ReadonlyArray<string>, log: BootLog, stallMs?: number) =>
    Effect.scoped(
      Effect.gen(function* () {
        const proc = yield* Effect.acquireRelease(
          startExec(docker, container(id), argv, { cwd: "/", user: "0:0" }),
          (p) => p.kill("SIGKILL")
        ).pipe(Effect.mapError(step(name)))
        const tail: Array<string> = []
        const lines = lineSplitter((line) => {
          tail.push(line)
          if (tail.length > 6) tail.shift()
          Effect.runFork(log(name, "info", line))
        })
        proc.stdout.on("data", lines.push)
        proc.stderr.on("data", lines.push)
        const result = yield* stallMs === undefined
          ? collect(proc)
          : Effect.raceFirst(collect(proc), silence([proc.stdout, proc.stderr], stallMs, name, `${argv[0]} ${name}`))
        lines.flush()
        if (result.exitCode !== 0) {
          return yield* new ProvisionError({
            step: name,
            message: `${argv[0]} exited with ${result.exitCode}: ${tail.join(" | ")}`
          })
        }
      })
    )

  const provision: Provisioner["provision"] = (spec, log, _options, openToProcesses) =>
    Effect.gen(function* () {
      const id = spec.workspaceId
      yield* Effect.tryPromise({ try: () => docker.getImage(image).inspect(), catch: step("image") }).pipe(
        Effect.mapError(
          () =>
            new ProvisionError({
              step: "image",
              message: `the Docker engine has no image ${image} (build it with infra's WorkspaceImage.ensure)`
            })
        )
      )
      const source = yield* localRepository(spec.repoUrl)
      const local = localPath(spec.repoUrl) !== undefined
      yield* removeContainer(id)
      const binds = [`${nodeBinary}:${NODE_IN_CONTAINER}:ro`]
      // one file (the bind of a missing one would make a directory there): the demo agent refuses to start without it
      if (existsSync(demoAgent)) binds.push(`${demoAgent}:${DEMO_AGENT_IN_CONTAINER}:ro`)
      if (local) binds.push(`${source}:${SOURCE}:ro`)
      // real agents' pinned installs (ADR 0024), read-only like the demo agent
      const agents = agentCacheDir()
      if (existsSync(agents)) binds.push(`${agents}:${AGENTS_IN_CONTAINER}:ro`)
      const created = yield* Effect.tryPromise({
        try: () =>
          docker.createContainer({
            name: containerName(id),
            Image: image,
            Cmd: ["sleep", "infinity"],
            WorkingDir: WORKSPACE,
            // the container's whole environment: the workspace's variables and nothing of the vm-agent's
            Env: [`PATH=${PATH}`, `HOME=${HOME}`, "LANG=C.UTF-8", ...spec.env.map((e) => `${e.name}=${e.value}`)],
            User: WORKSPACE_USER,
            Labels: { "sam.workspace": id, "sam.hash": hashSpec(spec) },
            HostConfig: {
              NetworkMode: spec.network,
              Init: true,
              Binds: binds,
              // dockerd brings running workspaces back after a reboot of the node
              RestartPolicy: { Name: "unless-stopped" }
            }
          }),
        catch: step("container")
      })
      yield* Effect.tryPromise({ try: () => created.start(), catch: step("container") })
      yield* log("container", "completed", `container ${containerName(id)} started (network ${spec.network})`)

      // What is not the checkout (home files, absolute paths), as root before anything runs as the user; the home
      // is then the user's. From there the container takes processes (ADR 0037) while the repository is cloned
      // and its files written as root into a checkout the user cannot write; the checkout is the user's last.
      const putFiles = (files: typeof spec.files) =>
        files.length === 0
          ? Effect.void
          : Effect.try({
              try: () =>
                tarFiles(
                  files.map((f) => ({
                    ...f,
                    path: f.path.startsWith("~/") ? posix.join(HOME, f.path.slice(2)) : posix.resolve(WORKSPACE, f.path)
                  }))
                ),
              catch: step("files")
            }).pipe(
              Effect.flatMap((archive) =>
                Effect.tryPromise({ try: () => created.putArchive(archive, { path: "/" }), catch: step("files") })
              )
            )
      yield* putFiles(spec.files.filter((f) => !inCheckout(f.path)))
      if (spec.env.length > 0) {
        yield* log("env", "completed", `env set: ${spec.env.map((e) => e.name).join(", ")} (values not shown)`)
      }
      yield* inContainer(id, "user", ["sh", "-c", `mkdir -p ${HOME} && chown -R ${WORKSPACE_USER} ${HOME}`], log)
      yield* log("user", "completed", `processes run as ${WORKSPACE_USER}`)
      yield* openToProcesses({})

      yield* log("clone", "started", `cloning ${spec.repoUrl}${spec.branch ? ` (branch ${spec.branch})` : ""}`)
      const branch = spec.branch ? ["--branch", spec.branch] : []
      yield* inContainer(
        id,
        "clone",
        ["git", "clone", "--progress", "--no-hardlinks", ...branch, "--", local ? SOURCE : spec.repoUrl, WORKSPACE],
        log,
        // a local copy writes nothing until it is done, and has no server to wait on
        local ? undefined : cloneStallMs()
      )
      yield* log("clone", "completed", "repository cloned")
      yield* putFiles(spec.files.filter((f) => inCheckout(f.path)))
      if (spec.files.length > 0) yield* log("files", "completed", `wrote ${spec.files.map((f) => f.path).join(", ")}`)
      // cloned and written as root: the checkout becomes the user's (chown -R changes a directory after its
      // content and follows no link, so the user, already running, gains nothing while it walks)
      yield* inContainer(id, "user", ["chown", "-R", WORKSPACE_USER, WORKSPACE], log)
      return {}
    })

  const provisioner: Provisioner = {
    kind: "docker",
    pathOf: () => WORKSPACE,
    homeOf: () => HOME,
    provision,
    halt: (record) =>
      Effect.tryPromise({ try: () => container(record.workspaceId).stop({ t: 5 }), catch: step("stop") }).pipe(
        Effect.catchIf(
          (e) => /already stopped|304/i.test(e.message),
          () => Effect.void
        )
      ),
    // the container started again at once (SIGKILL): every process in it ends, its init and `sleep infinity` come back,
    // and its files stay
    endProcesses: (record) =>
      Effect.tryPromise(() => container(record.workspaceId).restart({ t: 0 })).pipe(
        Effect.tapError((e) => Effect.logWarning(`could not end the processes of ${record.workspaceId}: ${e}`)),
        Effect.ignore
      ),
    resume: (record) =>
      Effect.tryPromise({ try: () => container(record.workspaceId).start(), catch: step("start") }).pipe(
        Effect.catchIf(
          (e) => /already started|304/i.test(e.message),
          () => Effect.void
        )
      ),
    health: (record) =>
      Effect.tryPromise(() => container(record.workspaceId).inspect()).pipe(
        Effect.map((info) =>
          // a container from before workspaces had a user of their own runs agents as root, one from before ADR 0049
          // shows our whole checkout at APP_IN_CONTAINER: it is made again
          info.Config.User !== WORKSPACE_USER ||
          (info.HostConfig.Binds ?? []).some((bind) => bind.split(":")[1] === APP_IN_CONTAINER)
            ? ("missing" as const)
            : info.State.Running
              ? ("ok" as const)
              : ("stopped" as const)
        ),
        Effect.orElseSucceed(() => "missing" as const)
      ),
    destroy: removeContainer,
    spawn: (record, id, argv, opts) =>
      Effect.acquireRelease(
        startExec(docker, container(id), argv, {
          cwd: opts?.cwd ? posix.resolve(record.path, opts.cwd) : record.path,
          env: opts?.env
        }),
        (proc) => proc.kill("SIGKILL")
      )
  }

  const lifecycle = makeLifecycle(records, provisioner)
  return { ...lifecycle, capabilities: () => probeDocker({ socketPath, image }) }
}

export const layerDocker = (options: DockerRuntimeOptions) =>
  Layer.sync(WorkspaceRuntime, () => makeDockerRuntime(options))
