import { randomBytes } from "node:crypto"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { readdir, readFile, rename, rm } from "node:fs/promises"
import { join } from "node:path"
import { Domain, SessionId, safeParseJson, TaskId, WorkspaceId } from "@sam/bus"
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
  /** The record a file holds; none when it is not one (logged). */
  const readable = (name: string, text: string) => {
    const parsed = safeParseJson(SessionRecord, text)
    return parsed.success
      ? Effect.succeed<SessionRecord | undefined>(parsed.data)
      : Effect.logWarning(`ignoring unreadable session record ${name}`).pipe(Effect.as(undefined))
  }
  return {
    dir,
    /**
     * Written to a temporary file, synchronously (a record is a few hundred bytes: 0.4 ms at the median on a busy node,
     * where a round trip through the thread pool took milliseconds, issue 12), then renamed over the record, in the
     * thread pool. The rename replaces a file, so ext4 writes the new one's blocks out first: 1.3 ms at the median
     * and up to 80 ms in the live benchmark, during which every other session of the node would wait for the event
     * loop. The caller waits for it as before; writes of one record never interleave (the callers' semaphore), and
     * an interrupted caller still waits for its rename, so a `remove` behind that semaphore comes after it (a rename
     * left in the thread pool could bring back the record of a session that was stopped).
     */
    save: (record: SessionRecord) =>
      Effect.suspend(() => {
        // root's alone: agents run on this machine as other users (ADR 0014)
        mkdirSync(dir, { recursive: true, mode: 0o700 })
        const tmp = `${path(record.sessionId)}.${randomBytes(4).toString("hex")}.tmp`
        writeFileSync(tmp, JSON.stringify(record), { mode: 0o600 })
        return Effect.promise(() => rename(tmp, path(record.sessionId)))
      }).pipe(Effect.uninterruptible),
    remove: (id: string) => Effect.promise(() => rm(path(id), { force: true })),
    /**
     * One session's record, read at once (a prompt's): not every record of the node through the thread pool, four
     * round trips each, on the way to the turn's first output. None when missing or unreadable (logged).
     */
    get: (id: SessionId) =>
      Effect.suspend(() => {
        let text: string
        try {
          text = readFileSync(path(id), "utf8")
        } catch {
          return Effect.succeed(undefined)
        }
        return readable(`${id}.json`, text).pipe(
          Effect.map((record) => (record?.sessionId === id ? record : undefined))
        )
      }),
    /** every readable record; unreadable files are logged and skipped */
    list: Effect.gen(function* () {
      const names = yield* Effect.promise(() => readdir(dir).catch(() => [] as Array<string>))
      const records: Array<SessionRecord> = []
      for (const name of names.filter((n) => n.endsWith(".json"))) {
        const text = yield* Effect.promise(() => readFile(join(dir, name), "utf8").catch(() => ""))
        const record = yield* readable(name, text)
        if (record !== undefined) records.push(record)
      }
      return records
    })
  }
}
export type SessionRecords = ReturnType<typeof makeSessionRecords>
