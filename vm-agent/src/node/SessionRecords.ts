import { randomBytes } from "node:crypto"
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Domain, SessionId, TaskId, WorkspaceId } from "@sam/bus"
import { Effect } from "effect"
import { z } from "zod"

/** What a node remembers of a session across its own restarts, so it can reload the agent's session. */
export const SessionRecord = z.object({
  sessionId: SessionId,
  workspaceId: WorkspaceId,
  taskId: TaskId.optional(),
  agent: Domain.NodeProtocol.AgentKind,
  mode: Domain.NodeProtocol.TaskMode,
  acpSessionId: z.string().optional(),
  /** the agent's process group when it last started, to clear it after a node restart */
  agentPgid: z.number().int().positive().optional(),
  /** when that process started (clock ticks since boot) and in which boot: the group is only killed while it is it */
  agentStart: z.object({ ticks: z.number().int().nonnegative(), boot: z.string().max(64) }).optional(),
  lastSeq: z.number().int().nonnegative(),
  promptEpoch: z.number().int().nonnegative(),
  /** a turn was running when this was saved: after a node restart it is reported lost (ADR 0021) */
  turnInFlight: z.boolean().optional(),
  /**
   * a task-mode turn ended and its task's result (commit, push) was not reported yet: after a node restart the
   * result is reported failed, so the task does not wait for it
   */
  resultPending: z.boolean().optional(),
  /** the launch as the control plane sealed it to this node: ciphertext, opened at each agent start (ADR 0024) */
  launch: Domain.AgentLaunch.SealedLaunch.optional()
})
export type SessionRecord = z.infer<typeof SessionRecord>

export const makeSessionRecords = (dataDir: string) => {
  const dir = join(dataDir, "sessions")
  const path = (id: string) => join(dir, `${id}.json`)
  // Writes of one record are serialized, each through its own temporary file and an atomic rename.
  const lock = Effect.unsafeMakeSemaphore(1)
  return {
    dir,
    save: (record: SessionRecord) =>
      lock.withPermits(1)(
        Effect.promise(async () => {
          // root's alone: agents run on this machine as other users (ADR 0014)
          await mkdir(dir, { recursive: true, mode: 0o700 })
          const tmp = `${path(record.sessionId)}.${randomBytes(4).toString("hex")}.tmp`
          await writeFile(tmp, JSON.stringify(record), { mode: 0o600 })
          await rename(tmp, path(record.sessionId))
        })
      ),
    remove: (id: string) => Effect.promise(() => rm(path(id), { force: true })),
    /** every readable record; unreadable files are logged and skipped */
    list: Effect.gen(function* () {
      const names = yield* Effect.promise(() => readdir(dir).catch(() => [] as Array<string>))
      const records: Array<SessionRecord> = []
      for (const name of names.filter((n) => n.endsWith(".json"))) {
        const text = yield* Effect.promise(() => readFile(join(dir, name), "utf8").catch(() => ""))
        const parsed = SessionRecord.safeParse(
          (() => {
            try {
              return JSON.parse(text)
            } catch {
              return undefined
            }
          })()
        )
        if (parsed.success) records.push(parsed.data)
        else yield* Effect.logWarning(`ignoring unreadable session record ${name}`)
      }
      return records
    })
  }
}
export type SessionRecords = ReturnType<typeof makeSessionRecords>
