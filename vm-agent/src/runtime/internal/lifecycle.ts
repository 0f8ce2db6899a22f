import type { Readable } from "node:stream"
import { Data, Effect, Option } from "effect"
import { z } from "zod"
import {
  type CreateOptions,
  type ExecOptions,
  RuntimeFailure,
  type RuntimeKind,
  WorkspaceConflict,
  WorkspaceInvalid,
  WorkspaceNotFound,
  type WorkspaceProcess,
  type WorkspaceRuntimeService,
  WorkspaceSpec,
  type WorkspaceSpecInput,
  WorkspaceUnavailable
} from "../WorkspaceRuntime.js"
import { type BootLog, makeBootLog } from "./bootLog.js"
import { hashSpec, newRecord, type Records, toInfo as recordInfo, type WorkspaceRecord } from "./records.js"

/** A provisioning step failed; the workspace ends `error` with `step: message` as its reason. */
export class ProvisionError extends Data.TaggedError("ProvisionError")<{
  readonly step: string
  readonly message: string
}> {}

/** What differs between runtimes; the create/conflict/record logic around it is shared. */
export interface Provisioner {
  readonly kind: RuntimeKind
  readonly pathOf: (workspaceId: string) => string
  /** the home of the workspace's user, as the workspace sees it */
  readonly homeOf: (workspaceId: string) => string
  /** what it returns (the workspace's user, on the host) is kept in the record */
  readonly provision: (
    spec: WorkspaceSpec,
    log: BootLog,
    options: CreateOptions | undefined,
    /**
     * Opens the workspace to processes before provisioning ends (ADR 0037), run as the user given: called once
     * nothing the workspace's processes can write is touched as root again.
     */
    open: (owner: Partial<Pick<WorkspaceRecord, "uid" | "gid">>) => Effect.Effect<void>
  ) => Effect.Effect<Partial<Pick<WorkspaceRecord, "uid" | "gid">>, ProvisionError>
  /** stops the workspace's processes (the container) without losing its files */
  readonly halt: (record: WorkspaceRecord) => Effect.Effect<void, ProvisionError>
  /** ends every process of the running workspace, leaving it running (see `WorkspaceRuntimeService.endProcesses`) */
  readonly endProcesses: (record: WorkspaceRecord) => Effect.Effect<void>
  readonly resume: (record: WorkspaceRecord) => Effect.Effect<void, ProvisionError>
  /** whether what the record says is running still exists (a container removed, a node rebooted) */
  readonly health: (record: WorkspaceRecord) => Effect.Effect<"ok" | "stopped" | "missing">
  /**
   * removes whatever exists of the workspace (its processes killed at once, its container, files and uid); never
   * fails for a missing part
   */
  readonly destroy: (workspaceId: string) => Effect.Effect<void, ProvisionError>
  readonly spawn: WorkspaceRuntimeService["spawn"] extends (...args: infer A) => infer R
    ? (record: WorkspaceRecord, ...args: A) => R
    : never
}

type Lifecycle = Omit<WorkspaceRuntimeService, "capabilities">

export const makeLifecycle = (records: Records, provisioner: Provisioner): Lifecycle => {
  const locks = new Map<string, Effect.Semaphore>()
  const locked = (workspaceId: string) => {
    let lock = locks.get(workspaceId)
    if (!lock) {
      lock = Effect.unsafeMakeSemaphore(1)
      locks.set(workspaceId, lock)
    }
    return lock.withPermits(1)
  }
  const toInfo = (record: WorkspaceRecord) => ({ ...recordInfo(record), home: provisioner.homeOf(record.workspaceId) })
  const runtimeFailure = (e: ProvisionError) =>
    new RuntimeFailure({ reason: provisioner.kind === "docker" ? "docker" : "io", message: `${e.step}: ${e.message}` })

  /** workspaces being created that already take processes (ADR 0037): their record, with the user they run as */
  const opened = new Map<string, WorkspaceRecord>()

  const provisionFresh = (spec: WorkspaceSpec, log: BootLog, options?: CreateOptions) =>
    Effect.gen(function* () {
      let record = newRecord(spec, provisioner.kind, provisioner.pathOf(spec.workspaceId))
      yield* records.write(record)
      if (options?.onProvisioning !== undefined) yield* options.onProvisioning
      yield* log("create", "started", `creating workspace ${spec.workspaceId} (${provisioner.kind} runtime)`)
      const started = Date.now()
      // The user is recorded before anything runs as it: a delete after a failure (or a restart) finds its
      // processes and gives its uid back.
      const open = (owner: Partial<Pick<WorkspaceRecord, "uid" | "gid">>) =>
        Effect.gen(function* () {
          record = yield* records.update(record, owner)
          opened.set(spec.workspaceId, record)
          if (options?.onSpawnable !== undefined) yield* options.onSpawnable
        })
      const outcome = yield* provisioner.provision(spec, log, options, open).pipe(
        Effect.either,
        Effect.onInterrupt(() => Effect.sync(() => opened.delete(spec.workspaceId)))
      )
      if (outcome._tag === "Left") {
        opened.delete(spec.workspaceId)
        // Nothing of a failed create is kept but its record (`error`, the reason): what started while it was
        // created (ADR 0037), its container (which would run on, and come back with dockerd), its files and its
        // uid go. Nobody deletes an errored workspace on its own (the reconciler acts on running ones), and what
        // tells why it failed is the boot log, which is the control plane's; a half-made checkout explains nothing
        // more. A user's delete later finds nothing left, and no uid another workspace may have by then.
        const removed = yield* provisioner.destroy(spec.workspaceId).pipe(Effect.either)
        if (removed._tag === "Left")
          yield* log("delete", "info", `could not remove what the failed create made: ${removed.left.message}`)
        const reason = `${outcome.left.step}: ${outcome.left.message}`
        yield* log(outcome.left.step, "failed", outcome.left.message)
        return yield* records.update(record, { status: "error", reason, uid: undefined, gid: undefined })
      }
      yield* log("create", "completed", `workspace is running (${Date.now() - started} ms)`)
      return yield* records
        .update(record, { ...outcome.right, status: "running" })
        .pipe(Effect.ensuring(Effect.sync(() => opened.delete(spec.workspaceId))))
    })

  const create = Effect.fn("WorkspaceRuntime.create")(function* (input: WorkspaceSpecInput, options?: CreateOptions) {
    const parsed = WorkspaceSpec.safeParse(input)
    if (!parsed.success) return yield* new WorkspaceInvalid({ message: z.prettifyError(parsed.error) })
    const spec = parsed.data
    const log = makeBootLog(spec, options)
    return yield* locked(spec.workspaceId)(
      Effect.gen(function* () {
        const existing = yield* records.read(spec.workspaceId)
        if (Option.isSome(existing)) {
          if (existing.value.hash !== hashSpec(spec)) {
            return yield* new WorkspaceConflict({
              workspaceId: spec.workspaceId,
              message: `workspace ${spec.workspaceId} exists with other parameters (repository, branch, network, env or files)`
            })
          }
          const record = existing.value
          const health = record.status === "running" ? yield* provisioner.health(record) : "ok"
          if (health === "stopped") {
            yield* log("create", "info", "workspace exists with the same parameters but was not running; starting it")
            const resumed = yield* provisioner.resume(record).pipe(Effect.either)
            if (resumed._tag === "Right") return toInfo(record)
            yield* log("create", "info", `cannot start it (${resumed.left.message}); creating it anew`)
          }
          if (health === "missing") yield* log("create", "info", "workspace is gone from the runtime; creating it anew")
          if (record.status !== "creating" && health === "ok") {
            yield* log("create", "info", `workspace exists with the same parameters (${record.status})`)
            return toInfo(record)
          }
          // "creating" while we hold its lock: the daemon died in the middle of an earlier create.
          if (record.status === "creating")
            yield* log("create", "info", "an earlier create was interrupted; starting over")
          yield* provisioner.destroy(spec.workspaceId).pipe(Effect.ignore)
        }
        return toInfo(yield* provisionFresh(spec, log, options))
      })
    )
  })

  const require = (workspaceId: string) =>
    records
      .read(workspaceId)
      .pipe(
        Effect.flatMap(
          Option.match({ onNone: () => Effect.fail(new WorkspaceNotFound({ workspaceId })), onSome: Effect.succeed })
        )
      )

  const requireRunning = (workspaceId: string) =>
    require(workspaceId).pipe(
      Effect.filterOrFail(
        (r) => r.status === "running",
        (r) => new WorkspaceUnavailable({ workspaceId, status: r.status })
      )
    )

  const spawn: Lifecycle["spawn"] = (workspaceId, argv, options) =>
    Effect.suspend(() => {
      const early = opened.get(workspaceId)
      return early !== undefined
        ? provisioner.spawn(early, workspaceId, argv, options)
        : requireRunning(workspaceId).pipe(
            Effect.flatMap((record) => provisioner.spawn(record, workspaceId, argv, options))
          )
    })

  const exec = Effect.fn("WorkspaceRuntime.exec")(function* (
    workspaceId: string,
    argv: ReadonlyArray<string>,
    options?: ExecOptions & { readonly stdin?: string }
  ) {
    return yield* Effect.scoped(
      Effect.gen(function* () {
        const proc = yield* spawn(workspaceId, argv, options)
        return yield* collect(proc, options?.stdin)
      })
    )
  })

  const transition = (workspaceId: string, op: "halt" | "resume") =>
    locked(workspaceId)(
      Effect.gen(function* () {
        const record = yield* require(workspaceId)
        yield* provisioner[op](record).pipe(Effect.mapError(runtimeFailure))
        return toInfo(yield* records.update(record, { status: op === "halt" ? "stopped" : "running" }))
      })
    )

  return {
    kind: provisioner.kind,
    create,
    // a workspace that takes processes while it is created: its record is at hand (a start reads it on its way)
    get: (workspaceId) =>
      Effect.suspend(() => {
        const early = opened.get(workspaceId)
        return early !== undefined
          ? Effect.succeed(Option.some(toInfo(early)))
          : records.read(workspaceId).pipe(Effect.map(Option.map(toInfo)))
      }),
    list: () => records.list().pipe(Effect.map((all) => all.map(toInfo))),
    endProcesses: (workspaceId) =>
      locked(workspaceId)(
        records
          .read(workspaceId)
          .pipe(
            Effect.flatMap((record) =>
              Option.isSome(record) && record.value.status === "running"
                ? provisioner.endProcesses(record.value)
                : Effect.void
            )
          )
      ),
    spawn,
    exec,
    stop: Effect.fn("WorkspaceRuntime.stop")(function* (workspaceId: string) {
      return yield* transition(workspaceId, "halt")
    }),
    start: Effect.fn("WorkspaceRuntime.start")(function* (workspaceId: string) {
      return yield* transition(workspaceId, "resume")
    }),
    delete: Effect.fn("WorkspaceRuntime.delete")(function* (workspaceId: string) {
      yield* locked(workspaceId)(
        provisioner
          .destroy(workspaceId)
          .pipe(Effect.mapError(runtimeFailure), Effect.zipRight(records.remove(workspaceId)))
      )
    })
  } satisfies Lifecycle
}

/** Feed `stdin`, then read both outputs to their end and wait for the exit code. */
export const collect = (proc: WorkspaceProcess, stdin?: string) =>
  Effect.gen(function* () {
    const read = (stream: Readable) =>
      Effect.async<string>((resume) => {
        const chunks: Array<Buffer> = []
        stream.on("data", (c: Buffer) => chunks.push(Buffer.from(c)))
        stream.once("end", () => resume(Effect.succeed(Buffer.concat(chunks).toString("utf8"))))
        stream.once("error", () => resume(Effect.succeed(Buffer.concat(chunks).toString("utf8"))))
      })
    const outputs = Effect.all([read(proc.stdout), read(proc.stderr)], { concurrency: 2 })
    yield* Effect.sync(() => proc.stdin.end(stdin ?? ""))
    const [[stdout, stderr], exitCode] = yield* Effect.all([outputs, proc.exitCode], { concurrency: 2 })
    return { exitCode, stdout, stderr }
  })
