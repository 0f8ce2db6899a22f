import { posix } from "node:path"
import type { Readable, Writable } from "node:stream"
import { Domain } from "@sam/bus"
import { Context, Data, type Effect, type Option, type Redacted, type Scope } from "effect"
import { z } from "zod"

/** The bus's `workspace.create` shapes: one definition for what crosses the wire and what the runtime takes. */
export const EnvVar = Domain.NodeProtocol.EnvVar
export const RuntimeFile = Domain.NodeProtocol.RuntimeFile

/**
 * Whether a runtime file goes into the checkout: not `~/…` (the home) and not absolute. Such files are written
 * after the clone; the others before the workspace takes processes (ADR 0037).
 */
export const inCheckout = (path: string) => !path.startsWith("~/") && !posix.isAbsolute(path)

export const WorkspaceSpec = z.object({
  workspaceId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/),
  /** any URL or path the node can reach; a local path or `file://` URL is mounted read-only into a container */
  repoUrl: z.string().min(1).max(2048),
  branch: z.string().min(1).max(255).optional(),
  /** containers only: `none` (the default) or the host's network */
  network: z.enum(["none", "host"]).default("none"),
  env: z.array(EnvVar).max(200).default([]),
  files: z.array(RuntimeFile).max(100).default([])
})
export type WorkspaceSpecInput = z.input<typeof WorkspaceSpec>
export type WorkspaceSpec = z.output<typeof WorkspaceSpec>

export type RuntimeKind = "docker" | "host"
export type WorkspaceState = "creating" | "running" | "stopped" | "error"

export interface WorkspaceInfo {
  readonly workspaceId: string
  readonly runtime: RuntimeKind
  readonly status: WorkspaceState
  readonly reason?: string | undefined
  /** the checkout: a host directory, or /workspace in the container */
  readonly path: string
  /** the home of the user the workspace's processes run as, as the workspace sees it (HOME) */
  readonly home: string
  readonly createdAt: string
  readonly updatedAt: string
}

/** One line of a workspace's boot log, in the bus's `workspace.bootlog` shape. */
export interface BootLogEntry {
  readonly workspaceId: string
  readonly step: string
  readonly status: "started" | "completed" | "failed" | "info"
  readonly message: string
}

export interface CreateOptions {
  readonly onLog?: (entry: BootLogEntry) => Effect.Effect<void>
  /**
   * A token for the repository, asked for just before the clone (ADR 0028): given to that one git process
   * of the vm-agent's, never stored, never in the workspace's environment.
   */
  readonly repositoryCredential?: Effect.Effect<RepositoryCredential | undefined>
  /**
   * Called once the workspace takes processes although its create has not ended (ADR 0037): from then on `spawn`
   * and `exec` work while the repository is cloned, so an agent can start alongside. Runtimes that never open
   * early (Docker) do not call it; the create's end is then the first moment.
   */
  readonly onSpawnable?: Effect.Effect<void>
  /**
   * Called when the create makes the workspace (afresh, or again after an interrupted create or one gone from the
   * runtime), before its first boot-log line; not when it finds the workspace made already (a create delivered
   * again), which is no news.
   */
  readonly onProvisioning?: Effect.Effect<void>
}

export interface RepositoryCredential {
  readonly username: string
  readonly token: Redacted.Redacted<string>
}

/** Where a workspace's git credential helper reaches the vm-agent, and who may connect there. */
export interface GitHelperSocket {
  readonly socketPath: string
  readonly uid?: number | undefined
  readonly repoUrl: string
}

export interface ExecOptions {
  /** relative to the checkout unless absolute */
  readonly cwd?: string
  readonly env?: Readonly<Record<string, string>>
}

export interface ExecResult {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
}

/** A process started in a workspace, in a process group of its own. */
export interface WorkspaceProcess {
  readonly stdin: Writable
  readonly stdout: Readable
  readonly stderr: Readable
  /** waits for the exit; a signal death is 128 + its number */
  readonly exitCode: Effect.Effect<number>
  /** signals the whole process group while its leader runs */
  readonly kill: (signal?: NodeJS.Signals) => Effect.Effect<void>
  /** the process group's id (the leader's pid) as seen where it runs: on the host, or in the container */
  readonly pgid: Effect.Effect<number>
  /** signals the whole process group, also after its leader ended (orphans left in it) */
  readonly killGroup: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** whether a process of the group that can still run is left (zombies do not count) */
  readonly groupAlive: Effect.Effect<boolean>
  /**
   * signals the processes of the group that started at or after `since` (kernel clock ticks since boot, as
   * `bootTicks` reads them), not the leader: what it started during a turn (on the host also their descendants
   * that left the group)
   */
  readonly killSince: (since: number, signal: NodeJS.Signals) => Effect.Effect<void>
  /** whether one of the processes `killSince` signals can still run */
  readonly aliveSince: (since: number) => Effect.Effect<boolean>
}

export interface Capabilities {
  readonly docker: boolean
  /** why Docker is not available, when it is not */
  readonly dockerReason?: string | undefined
  readonly hostRuntime: boolean
  readonly image?: string | undefined
}

export class WorkspaceInvalid extends Data.TaggedError("WorkspaceInvalid")<{ readonly message: string }> {}

/** The workspace exists with other parameters; nothing was changed. */
export class WorkspaceConflict extends Data.TaggedError("WorkspaceConflict")<{
  readonly workspaceId: string
  readonly message: string
}> {}

export class WorkspaceNotFound extends Data.TaggedError("WorkspaceNotFound")<{ readonly workspaceId: string }> {
  override get message() {
    return `no workspace ${this.workspaceId} on this node`
  }
}

export class WorkspaceUnavailable extends Data.TaggedError("WorkspaceUnavailable")<{
  readonly workspaceId: string
  readonly status: WorkspaceState
}> {
  override get message() {
    return `workspace ${this.workspaceId} is ${this.status}, not running`
  }
}

export class RuntimeFailure extends Data.TaggedError("RuntimeFailure")<{
  readonly reason: "docker" | "io" | "spawn"
  readonly message: string
  readonly cause?: unknown
}> {}

export type ProcessError = WorkspaceNotFound | WorkspaceUnavailable | RuntimeFailure

export interface WorkspaceRuntimeService {
  readonly kind: RuntimeKind
  /**
   * Create the workspace, or return it when it exists with the same parameters (also across daemon
   * restarts). A failure to provision is not an error of this effect: the workspace ends `error` with a reason.
   */
  readonly create: (
    spec: WorkspaceSpecInput,
    options?: CreateOptions
  ) => Effect.Effect<WorkspaceInfo, WorkspaceInvalid | WorkspaceConflict>
  readonly get: (workspaceId: string) => Effect.Effect<Option.Option<WorkspaceInfo>>
  readonly list: () => Effect.Effect<ReadonlyArray<WorkspaceInfo>>
  readonly spawn: (
    workspaceId: string,
    argv: ReadonlyArray<string>,
    options?: ExecOptions
  ) => Effect.Effect<WorkspaceProcess, ProcessError, Scope.Scope>
  /** run to completion and collect the output */
  readonly exec: (
    workspaceId: string,
    argv: ReadonlyArray<string>,
    options?: ExecOptions & { readonly stdin?: string }
  ) => Effect.Effect<ExecResult, ProcessError>
  readonly stop: (workspaceId: string) => Effect.Effect<WorkspaceInfo, WorkspaceNotFound | RuntimeFailure>
  readonly start: (workspaceId: string) => Effect.Effect<WorkspaceInfo, WorkspaceNotFound | RuntimeFailure>
  /** removes everything of the workspace; deleting an unknown workspace succeeds */
  readonly delete: (workspaceId: string) => Effect.Effect<void, RuntimeFailure>
  /**
   * Ends every process of a running workspace (SIGKILL), also those that left their agent's process group, and
   * leaves the workspace running: for a vm-agent that starts again, when all that runs there is the last run's. On
   * the host only a workspace with a user of its own can be told apart from the machine; without one nothing is done.
   */
  readonly endProcesses: (workspaceId: string) => Effect.Effect<void>
  readonly capabilities: () => Effect.Effect<Capabilities>
  /**
   * Keeps one process of `argv` booted ahead of the workspaces (ADR 0055), for as long as the scope: the next
   * workspace created takes it, and its first spawn of the same argv gets it, told its cwd and env by a start line
   * (`WARM_START_ENV`); a command started so must read that line first. Runtimes that cannot (Docker) lack it.
   */
  readonly keepWarm?: (argv: ReadonlyArray<string>) => Effect.Effect<void, never, Scope.Scope>
  /** the socket the workspace's git credential helper asks (runtimes that install the helper) */
  readonly gitHelper?: (workspaceId: string) => Effect.Effect<GitHelperSocket | undefined>
}

/** Where workspaces run: Docker containers, or directories and processes on the host. */
export class WorkspaceRuntime extends Context.Tag("sam/WorkspaceRuntime")<
  WorkspaceRuntime,
  WorkspaceRuntimeService
>() {}
