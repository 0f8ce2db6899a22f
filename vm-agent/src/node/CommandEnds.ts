import { randomBytes } from "node:crypto"
import { mkdir, readFile, rename, writeFile } from "node:fs/promises"
import { dirname } from "node:path"
import { Effect } from "effect"
import { z } from "zod"

/** Commands that end what their key names: what was published before one of them is stale. */
export const ENDING_COMMANDS: ReadonlySet<string> = new Set(["workspace.stop", "workspace.delete", "session.stop"])

/**
 * How long an end is kept: a stale command comes from a redelivery (an ack wait, a retry's backoff), minutes after it
 * was sent, never a day. At most `kept` ends are kept (the oldest go first).
 */
const KEPT_FOR_MS = 86_400_000

const Stored = z.record(z.string(), z.number())

/**
 * When each workspace and session last had a stop or delete on this node (the stream's publish time of that
 * command), kept across restarts in `file`. A vm-agent restarted while a create or a start was in progress gets
 * that command again only once its ack wait has passed, after a stop or delete sent meanwhile: run then, it would
 * bring back what was stopped or deleted (a cancelled task's agent, its push). A command of the same workspace or
 * session published before such an end is stale, and is acknowledged without running.
 */
export const makeCommandEnds = (file: string, options: { readonly kept?: number } = {}) =>
  Effect.gen(function* () {
    const ends = new Map<string, number>()
    const text = yield* Effect.promise(() => readFile(file, "utf8").catch(() => undefined))
    if (text !== undefined) {
      const parsed = Stored.safeParse(
        (() => {
          try {
            return JSON.parse(text)
          } catch {
            return undefined
          }
        })()
      )
      if (parsed.success) for (const [key, at] of Object.entries(parsed.data)) ends.set(key, at)
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
      /** the end `publishedAt` comes before, when it does: the command is stale */
      staleBefore: (key: string, publishedAt: number): number | undefined => {
        const end = ends.get(key)
        return end !== undefined && publishedAt < end ? end : undefined
      },
      /** an ending command of `key`, published at `publishedAt`, was handled: kept before it is acknowledged */
      ended: (key: string, publishedAt: number) =>
        Effect.suspend(() => {
          if ((ends.get(key) ?? 0) >= publishedAt) return Effect.void
          ends.set(key, publishedAt)
          for (const [old, at] of ends) if (at < publishedAt - KEPT_FOR_MS) ends.delete(old)
          const kept = options.kept ?? 10_000
          if (ends.size > kept) {
            const oldest = [...ends.entries()].sort((a, b) => a[1] - b[1]).slice(0, ends.size - kept)
            for (const [old] of oldest) ends.delete(old)
          }
          return persist
        })
    }
  })
