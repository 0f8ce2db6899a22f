import { randomBytes } from "node:crypto"
import { mkdir, readFile, rename, writeFile } from "node:fs/promises"
import { dirname } from "node:path"
import { safeParseJson } from "@sam/bus"
import { Effect } from "effect"
import { z } from "zod"

/** Commands that end what their key names: a stop (or a session's stop) and a delete. */
export const endOf = (type: string): "stop" | "delete" | undefined =>
  type === "workspace.delete" ? "delete" : type === "workspace.stop" || type === "session.stop" ? "stop" : undefined

/**
 * How long an end is kept: a stale command comes from a redelivery (an ack wait, a retry's backoff), minutes after it
 * was sent, never a day. At most `kept` keys are kept (the oldest go first).
 */
const KEPT_FOR_MS = 86_400_000

const End = z.object({ stop: z.number().optional(), delete: z.number().optional() })
// a bare number: a stop's end, as the first version of this file kept it
const Stored = z.record(z.string(), z.union([End, z.number().transform((stop): End => ({ stop }))]))
type End = z.infer<typeof End>
const latest = (end: End) => Math.max(end.stop ?? 0, end.delete ?? 0)

/**
 * When each workspace and session last had a stop or delete on this node (the stream's publish time of that
 * command), kept across restarts in `file`. A vm-agent restarted while a create or a start was in progress gets
 * that command again only once its ack wait has passed, after a stop or delete sent meanwhile: run then, it would
 * bring back what was stopped or deleted (a cancelled task's agent, its push). A command of the same workspace or
 * session published before such an end is stale, and is acknowledged without running; a delete only behind a later
 * delete (a stop does not do what it does).
 */
export const makeCommandEnds = (file: string, options: { readonly kept?: number } = {}) =>
  Effect.gen(function* () {
    const ends = new Map<string, End>()
    const text = yield* Effect.promise(() => readFile(file, "utf8").catch(() => undefined))
    if (text !== undefined) {
      const parsed = safeParseJson(Stored, text)
      if (parsed.success) for (const [key, end] of Object.entries(parsed.data)) ends.set(key, end)
      else yield* Effect.logWarning(`ignoring unreadable ${file}: commands are not checked against earlier ends`)
    }
    const writing = yield* Effect.makeSemaphore(1)
    const persist = writing.withPermits(1)(
      Effect.tryPromise(async () => {
        await mkdir(dirname(file), { recursive: true, mode: 0o700 })
        const tmp = `${file}.${randomBytes(4).toString("hex")}.tmp`
        await writeFile(tmp, JSON.stringify(Object.fromEntries(ends)), { mode: 0o600 })
        await rename(tmp, file)
      }).pipe(Effect.catchAll((e) => Effect.logWarning(`could not keep ${file} (a restart forgets the ends): ${e}`)))
    )
    return {
      /** the end a command of `type` published at `publishedAt` comes before, when it does: the command is stale */
      staleBefore: (key: string, type: string, publishedAt: number): number | undefined => {
        const end = ends.get(key)
        if (end === undefined) return undefined
        const after = type === "workspace.delete" ? (end.delete ?? 0) : latest(end)
        return publishedAt < after ? after : undefined
      },
      /**
       * An ending command of `key`, published at `publishedAt`, is about to run: kept first, so that one failing and
       * tried again does not let an older command run in between
       */
      ended: (key: string, kind: "stop" | "delete", publishedAt: number) =>
        Effect.suspend(() => {
          const end = ends.get(key) ?? {}
          if ((end[kind] ?? 0) >= publishedAt) return Effect.void
          ends.set(key, { ...end, [kind]: publishedAt })
          for (const [old, at] of ends) if (latest(at) < publishedAt - KEPT_FOR_MS) ends.delete(old)
          const kept = options.kept ?? 10_000
          if (ends.size > kept) {
            const oldest = [...ends.entries()].sort((a, b) => latest(a[1]) - latest(b[1])).slice(0, ends.size - kept)
            for (const [old] of oldest) ends.delete(old)
          }
          return persist
        })
    }
  })
