import { createHash, randomBytes } from "node:crypto"
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Effect, Option } from "effect"
import { z } from "zod"
import type { RuntimeKind, WorkspaceInfo, WorkspaceSpec } from "../WorkspaceRuntime.js"

/**
 * What the daemon remembers of a workspace across restarts: the parameters' hash (to tell a repeated
 * create from a conflicting one) and the non-secret parts for humans. Env values are never stored here.
 */
export const WorkspaceRecord = z.object({
  workspaceId: z.string(),
  runtime: z.enum(["docker", "host"]),
  hash: z.string(),
  status: z.enum(["creating", "running", "stopped", "error"]),
  reason: z.string().optional(),
  path: z.string(),
  repoUrl: z.string(),
  branch: z.string().optional(),
  network: z.enum(["none", "host"]),
  envNames: z.array(z.string()),
  filePaths: z.array(z.string()),
  /** host runtime as root: the workspace's own uid (and gid), which its processes run as */
  uid: z.number().int().positive().optional(),
  gid: z.number().int().positive().optional(),
  createdAt: z.string(),
  updatedAt: z.string()
})
export type WorkspaceRecord = z.infer<typeof WorkspaceRecord>

export const hashSpec = (spec: WorkspaceSpec) =>
  createHash("sha256")
    .update(
      JSON.stringify({
        repoUrl: spec.repoUrl,
        branch: spec.branch ?? null,
        network: spec.network,
        env: [...spec.env].sort((a, b) => a.name.localeCompare(b.name)).map((e) => [e.name, e.value, e.secret]),
        files: [...spec.files]
          .sort((a, b) => a.path.localeCompare(b.path))
          .map((f) => [f.path, f.content, f.mode ?? null])
      })
    )
    .digest("hex")

export const toInfo = (record: WorkspaceRecord): Omit<WorkspaceInfo, "home"> => ({
  workspaceId: record.workspaceId,
  runtime: record.runtime,
  status: record.status,
  reason: record.reason,
  path: record.path,
  createdAt: record.createdAt,
  updatedAt: record.updatedAt
})

export const newRecord = (spec: WorkspaceSpec, runtime: RuntimeKind, path: string): WorkspaceRecord => {
  const now = new Date().toISOString()
  return {
    workspaceId: spec.workspaceId,
    runtime,
    hash: hashSpec(spec),
    status: "creating",
    path,
    repoUrl: spec.repoUrl,
    ...(spec.branch === undefined ? {} : { branch: spec.branch }),
    network: spec.network,
    envNames: spec.env.map((e) => e.name),
    filePaths: spec.files.map((f) => f.path),
    createdAt: now,
    updatedAt: now
  }
}

/** One JSON file per workspace in `dir`, written atomically; unreadable storage is a defect. */
export const makeRecords = (dir: string) => {
  const file = (id: string) => join(dir, `${id}.json`)
  const read = (id: string) =>
    Effect.promise(() => readFile(file(id), "utf8").catch(() => undefined)).pipe(
      Effect.map((text) => {
        if (text === undefined) return Option.none<WorkspaceRecord>()
        const parsed = WorkspaceRecord.safeParse(JSON.parse(text))
        return parsed.success ? Option.some(parsed.data) : Option.none<WorkspaceRecord>()
      })
    )
  const write = (record: WorkspaceRecord) =>
    Effect.promise(async () => {
      await mkdir(dir, { recursive: true, mode: 0o700 })
      // a name of its own: two writes of one record at once (a create ending while a stop begins) must not
      // share a file, or one renames the other's half-written text into place and the other finds nothing
      const tmp = `${file(record.workspaceId)}.${randomBytes(6).toString("hex")}.tmp`
      await writeFile(tmp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 })
      await rename(tmp, file(record.workspaceId))
    })
  const update = (record: WorkspaceRecord, patch: Partial<WorkspaceRecord>) => {
    const next: WorkspaceRecord = { ...record, ...patch, updatedAt: new Date().toISOString() }
    if (patch.status !== undefined && patch.status !== "error") delete next.reason
    return write(next).pipe(Effect.as(next))
  }
  const remove = (id: string) => Effect.promise(() => rm(file(id), { force: true }))
  const list = () =>
    Effect.promise(() => readdir(dir).catch(() => [] as Array<string>)).pipe(
      Effect.flatMap((names) =>
        Effect.forEach(
          names.filter((n) => n.endsWith(".json")),
          (n) => read(n.slice(0, -".json".length))
        )
      ),
      Effect.map((records) => records.flatMap(Option.toArray))
    )
  return { read, write, update, remove, list }
}
export type Records = ReturnType<typeof makeRecords>
