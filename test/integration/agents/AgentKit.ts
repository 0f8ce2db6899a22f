import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { readdir, readFile, stat } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import type { Api } from "@sam/bus"
import { FeedClient } from "@sam/gateway/client"
import { Effect } from "effect"
import { expect } from "vitest"
import { LocalNodes } from "../../src/ControlPlaneHarness.js"
import { waitUntil } from "../../src/Env.js"
import { GatewayUrl, type TestUser } from "../../src/index.js"
import { processes } from "../../src/ProcessTree.js"
import { api, recorded, untilTask } from "../gateway/RestKit.js"

/** Everything the ledger holds, as text: every row of every table. */
export const ledgerText = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const tables = yield* sql<{ name: string }>`
    SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`
  const parts: Array<string> = []
  for (const { name } of tables) {
    const rows = yield* sql<{ text: string | null }>`SELECT string_agg(t::text, ' ') AS text FROM ${sql(name)} t`
    parts.push(rows[0]?.text ?? "")
  }
  return parts.join("\n")
})

/** Every vm-agent log, and every workspace's env file (what its shells and terminals start with). */
export const nodeFiles = Effect.gen(function* () {
  const { dir } = yield* LocalNodes
  return yield* Effect.promise(async () => {
    const out: Array<{ path: string; text: string }> = []
    const walk = async (path: string, depth: number): Promise<void> => {
      for (const entry of await readdir(path, { withFileTypes: true }).catch(() => [])) {
        const full = join(path, entry.name)
        if (entry.isDirectory() && depth < 6 && entry.name !== "checkout" && entry.name !== "home")
          await walk(full, depth + 1)
        else if (
          entry.isFile() &&
          (entry.name === "vm-agent.log" || entry.name === "env" || entry.name.endsWith(".json"))
        )
          out.push({ path: full, text: await readFile(full, "utf8").catch(() => "") })
      }
    }
    await walk(dir, 0)
    return out
  })
})

/** A feed client following the project; the frames it received so far. */
export const follow = (user: TestUser, projectId: string) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const baseUrl = yield* GatewayUrl
      const frames: Array<Api.ServerFrame> = []
      const client = new FeedClient({
        baseUrl,
        token: user.token,
        projects: [projectId],
        onFrame: (f) => frames.push(f)
      })
      return { client, frames }
    }),
    ({ client }) => Effect.sync(() => client.close())
  )

/** A file of the task branch `sam/<taskId>` in the task's workspace checkout. */
export const branchFile = (taskId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const ws = yield* sql<{ id: string }>`SELECT workspace_id AS id FROM tasks WHERE id = ${taskId}`
    const { dir } = yield* LocalNodes
    const checkout = execFileSync("find", [dir, "-type", "d", "-path", `*${ws[0]!.id}*`, "-name", ".git"], {
      encoding: "utf8"
    })
      .trim()
      .split("\n")[0]!
      .replace(/\/\.git$/, "")
    return (path: string) =>
      execFileSync("git", ["-c", `safe.directory=${checkout}`, "-C", checkout, "show", `sam/${taskId}:${path}`], {
        encoding: "utf8"
      })
  })

/**
 * Follow a task's session on the feed as soon as it exists, wait for the task to end, and return its row and the
 * session's events as the feed client received them (a catch-up of what came before the subscription, then live).
 */
export const runTask = (
  feed: { readonly client: FeedClient; readonly frames: Array<Api.ServerFrame> },
  taskId: string
) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const opened = yield* untilTask(taskId, "has a session", (r) => r.sessionId !== null, "120 seconds")
    yield* waitUntil(
      "the session is open",
      sql`SELECT 1 FROM sessions WHERE id = ${opened.sessionId}`.pipe(Effect.map((rows) => rows[0]))
    )
    feed.client.subscribe({ sessions: [{ sessionId: opened.sessionId!, afterSeq: 0 }] })
    const done = yield* untilTask(taskId, "ends", (r) => ["completed", "failed"].includes(r.status), "150 seconds")
    const events = yield* waitUntil(
      "the feed shows the turn's end",
      Effect.sync(() => {
        const seen = feed.frames.flatMap((f) =>
          f.type === "session.event" && f.sessionId === done.sessionId ? [f.event as { type: string }] : []
        )
        return seen.some((e) => e.type === "turn-ended" || e.type === "turn-failed") ? seen : undefined
      }),
      { timeout: "20 seconds" }
    )
    return { done, events }
  })

/**
 * What the users of this file's workspaces hold in the machine's /tmp, which every workspace of a host node shares,
 * that another user could read: nothing is expected (their processes get `TMPDIR` in their own home). Gemini CLI
 * wrote a failed request there, the conversation with it, readable by all.
 */
export const inSharedTmp = Effect.gen(function* () {
  const { dir } = yield* LocalNodes
  return yield* Effect.promise(async () => {
    const uids = new Set<number>()
    const walk = async (path: string, depth: number): Promise<void> => {
      for (const entry of await readdir(path, { withFileTypes: true }).catch(() => [])) {
        if (!entry.isDirectory()) continue
        const full = join(path, entry.name)
        if (entry.name === "home" && path.includes("/workspaces/")) uids.add((await stat(full)).uid)
        else if (depth < 6 && entry.name !== "workspace" && entry.name !== "rootfs") await walk(full, depth + 1)
      }
    }
    await walk(dir, 0)
    uids.delete(0)
    const held: Array<string> = []
    for (const name of await readdir(tmpdir())) {
      const found = await stat(join(tmpdir(), name)).catch(() => undefined)
      // its own (0700, 0600) until the workspace is deleted, as Claude Code's socket directory; open to others, never
      if (found !== undefined && uids.has(found.uid) && (found.mode & 0o077) !== 0) held.push(name)
    }
    return { workspaceUsers: uids.size, held }
  })
})

/**
 * `secret` is nowhere but in the agent's process: not in the ledger, the node's logs and env files, any API response,
 * and nothing of the workspaces' is in the machine's /tmp (`inSharedTmp`).
 */
export const expectSecretKept = (secret: string) =>
  Effect.gen(function* () {
    const shared = yield* inSharedTmp
    // as root, every workspace has a user of its own; its files in /tmp are the ones looked for
    if (process.getuid?.() === 0) expect(shared.workspaceUsers).toBeGreaterThan(0)
    expect(shared.held).toEqual([])
    expect((yield* ledgerText).includes(secret)).toBe(false)
    const files = yield* nodeFiles
    // what the workspace's shells and terminals start with, and the node's log, were among those read
    expect(files.some((f) => f.path.endsWith(".sam-env.json"))).toBe(true)
    expect(files.some((f) => f.path.endsWith("vm-agent.log") && f.text.length > 0)).toBe(true)
    for (const file of files) expect(file.text.includes(secret), file.path).toBe(false)
    for (const response of recorded()) expect(response.text.includes(secret), response.path).toBe(false)
  })

export const masterKeyForTests = () => {
  process.env.SAM_MASTER_KEY ??= Buffer.alloc(32, 7).toString("base64")
}

/** The processes of this machine whose command line holds `marker` (a command, its shell, its wrappers). */
export const running = (marker: string) => processes().filter((p) => p.cmdline.includes(marker))

/**
 * Cancel a turn while its agent runs a long command (one whose command line holds `marker`): wait until the
 * command's processes run, cancel through the API, and wait for the turn to end cancelled on the transcript and
 * for every process of that command to be gone.
 */
export const cancelDuringCommand = (user: TestUser, taskId: string, marker: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const opened = yield* untilTask(taskId, "has a session", (r) => r.sessionId !== null, "120 seconds")
    const sessionId = opened.sessionId!
    yield* waitUntil(
      "the agent starts the long command",
      sql`SELECT 1 FROM session_events WHERE session_id = ${sessionId} AND type = 'tool-call'`.pipe(
        Effect.map((rows) => rows[0])
      ),
      { timeout: "90 seconds" }
    )
    const tree = yield* waitUntil(
      "the long command runs",
      Effect.sync(() => {
        const found = running(marker)
        return found.length > 0 ? found : undefined
      }),
      { timeout: "60 seconds" }
    )
    const cancelled = yield* api(user, "POST", `/sessions/${sessionId}/cancel`)
    expect(cancelled.status).toBe(202)
    yield* waitUntil(
      "the turn ends cancelled",
      sql`SELECT 1 FROM session_events WHERE session_id = ${sessionId} AND type = 'cancelled'`.pipe(
        Effect.map((rows) => rows[0])
      ),
      { timeout: "30 seconds" }
    )
    yield* waitUntil(
      "the long command's processes are gone",
      Effect.sync(() => (running(marker).length === 0 ? true : undefined)),
      { timeout: "20 seconds" }
    )
    // each process seen running it has ended: gone, or a zombie its parent has yet to reap
    const live = (pid: number) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
        return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] !== "Z"
      } catch {
        return false
      }
    }
    expect(tree.filter((p) => live(p.pid)).map((p) => p.cmdline)).toEqual([])
    return sessionId
  })

/** Send a follow-up prompt and wait until the transcript holds `answer` (the fake's scripted reply). */
export const followUp = (user: TestUser, sessionId: string, prompt: string, answer: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const prompted = yield* api(user, "POST", `/sessions/${sessionId}/prompt`, { body: { prompt } })
    expect(prompted.status).toBe(202)
    yield* waitUntil(
      "the follow-up is answered",
      sql`SELECT 1 FROM session_events WHERE session_id = ${sessionId} AND payload::text LIKE ${`%${answer}%`}`.pipe(
        Effect.map((rows) => rows[0])
      ),
      { timeout: "90 seconds" }
    )
  })

/**
 * How often the session's agent was started again (`restarted` events): none after a cancel the agent answered in
 * time, since the vm-agent keeps it then and kills only what the turn started.
 */
export const agentRestarts = (sessionId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql`SELECT 1 FROM session_events WHERE session_id = ${sessionId} AND type = 'restarted'`
    return rows.length
  })
