import { readdir, readFile, readlink } from "node:fs/promises"
import { FeedClient, framesOf, nodeWebSocket } from "@sam/gateway/client"
import { expect } from "vitest"
import { type Api, exec, Stop, waitFor } from "./SamUp.js"

/**
 * The fault matrix's view of a turn, through the HTTP API only (what a user or a client sees):
 * a task-mode task and a conversation started side by side on one node, each mid-turn when a fault
 * strikes, and what "truthful" means for them afterwards (issue 10, "Done when").
 */

export type Mode = "task" | "conversation"

// biome-ignore lint/suspicious/noExplicitAny: transcript entries are arbitrary JSON; tests assert them field by field
export type Entry = { seq: number; event: any }

export interface Turn {
  readonly mode: Mode
  readonly taskId: string
  readonly sessionId: string
  readonly nodeId: string
}

/** A turn that outlives a fault of a few seconds: `ticks` lines of output half a second apart, then a last word. */
export const ticking = (ticks: number) =>
  `say starting\nrun for i in $(seq 1 ${ticks}); do echo tick $i; sleep 0.5; done\nsay finished`

/** A turn that cannot end by itself within the test: only the fault ends it. */
export const sleeping = "say starting\nrun sleep 60\nsay too late"

/** The whole transcript of a session, page by page. */
export const transcript = async (client: Api, sessionId: string) => {
  const entries: Array<Entry> = []
  let after = 0
  for (;;) {
    const page = await client.call("GET", `/sessions/${sessionId}/events?afterSeq=${after}&limit=1000`)
    if (page.status !== 200) throw new Error(`transcript of ${sessionId}: ${JSON.stringify(page)}`)
    entries.push(...page.body.events)
    if (page.body.nextAfterSeq === null) return { entries, lastSeq: page.body.lastSeq as number }
    after = page.body.nextAfterSeq
  }
}

const getTask = async (client: Api, taskId: string) => (await client.call("GET", `/tasks/${taskId}`)).body

/** Submit a task-mode task and a conversation with `prompt`; resolved once both agents are inside their tool call. */
export const startTurns = async (client: Api, projectId: string, prompt: string, ms = 45_000) => {
  const submit = async (mode: Mode) => {
    const created = await client.call("POST", `/projects/${projectId}/tasks`, { prompt, mode })
    if (created.status !== 201) throw new Error(`task create: ${JSON.stringify(created)}`)
    return created.body.id as string
  }
  const ids = { task: await submit("task"), conversation: await submit("conversation") }
  const turn = async (mode: Mode): Promise<Turn> => {
    const taskId = ids[mode]
    // What the API said last, for the message when the turn never starts.
    let last: unknown
    const running = await waitFor(
      `${mode} ${taskId} to run`,
      async () => {
        const answer = await client.call("GET", `/tasks/${taskId}`)
        last = answer
        const task = answer.body
        if (["completed", "failed", "cancelled"].includes(task.status))
          throw new Stop(`${mode} ${taskId} ended before its turn ran: ${JSON.stringify(task)}`)
        return task.status === "in_progress" && task.sessionId && task.nodeId ? task : undefined
      },
      ms
    ).catch((error) => {
      throw error instanceof Stop ? error : new Error(`${error.message}; the API said last: ${JSON.stringify(last)}`)
    })
    await waitFor(
      `${mode} ${taskId}'s agent inside its tool call`,
      async () => (await transcript(client, running.sessionId)).entries.some((e) => e.event.type === "tool-call"),
      ms
    )
    return { mode, taskId, sessionId: running.sessionId, nodeId: running.nodeId }
  }
  const [task, conversation] = await Promise.all([turn("task"), turn("conversation")])
  return { task, conversation }
}

/** The session's snapshot once it no longer shows a turn working (written after the commit, so a moment later). */
const untilSnapshotSettled = (client: Api, sessionId: string) =>
  waitFor(
    `session ${sessionId}'s snapshot to settle`,
    async () => {
      const session = (await client.call("GET", `/sessions/${sessionId}`)).body
      const activity = session.snapshot?.activity
      return activity !== undefined && activity !== "prompting" && activity !== "recovering" ? session : undefined
    },
    10_000
  )

/** The last status of every tool call in the transcript. */
const toolCallStatuses = (entries: ReadonlyArray<Entry>) => {
  const status = new Map<string, string>()
  for (const { event } of entries) {
    if (event.type === "tool-call") status.set(event.toolCallId, event.status ?? "pending")
    if (event.type === "tool-call-update" && event.status !== undefined) status.set(event.toolCallId, event.status)
  }
  return status
}

/**
 * What holds after every fault: `seq` runs 1, 2, 3… with no gap or repeat up to the session's
 * `lastSeq`; no tool call is left pending or in progress; the last turn has ended.
 */
export const expectWholeTranscript = (entries: ReadonlyArray<Entry>, lastSeq: number, context = "") => {
  expect(
    entries.map((e) => e.seq),
    context
  ).toEqual(entries.map((_, i) => i + 1))
  expect(lastSeq, context).toBe(entries.length)
  const open = [...toolCallStatuses(entries)].filter(([, status]) => status === "pending" || status === "in_progress")
  expect(open, `tool calls left open: ${context}`).toEqual([])
  expect(entries.filter((e) => e.event.type === "turn-ended").length, context).toBeGreaterThan(0)
}

/** A compact transcript for an assertion's message. */
const brief = (entries: ReadonlyArray<Entry>) =>
  entries.map((e) => {
    const { type, toolCallId: _t, ...rest } = e.event
    return `${e.seq} ${type} ${JSON.stringify(rest).slice(0, 120)}`
  })

/** The text the agent said, and the tool output it streamed, in transcript order. */
export const said = (entries: ReadonlyArray<Entry>) =>
  entries
    .filter((e) => e.event.type === "text")
    .map((e) => e.event.text)
    .join("")
export const toolOutput = (entries: ReadonlyArray<Entry>) =>
  entries
    .filter((e) => e.event.type === "tool-call-update")
    .flatMap((e) => (Array.isArray(e.event.content) ? e.event.content : []))
    // biome-ignore lint/suspicious/noExplicitAny: ACP tool-call content, read as the agent wrote it
    .map((c: any) => c?.content?.text ?? "")
    .join("")

/**
 * The turn ran to its end through the fault: the task completed (task mode) or awaits a follow-up
 * (conversation), the snapshot is idle after `end_turn`, and the transcript holds every line of its
 * output once, in order, and the last word.
 */
export const untilCompleted = async (client: Api, turn: Turn, ticks: number, ms = 60_000) => {
  const task = await waitFor(
    `${turn.mode} ${turn.taskId} to finish its turn`,
    async () => {
      const task = await getTask(client, turn.taskId)
      if (task.status === "failed" || task.status === "cancelled") return task
      if (turn.mode === "task") return task.status === "completed" ? task : undefined
      return task.executionStep === "awaiting_followup" ? task : undefined
    },
    ms
  )
  // The task and the session are different actors: the transcript's end may follow the task's a moment later.
  const { entries, lastSeq } = await waitFor(
    `${turn.mode} ${turn.sessionId}'s transcript to end the turn`,
    async () => {
      const page = await transcript(client, turn.sessionId)
      return page.entries.at(-1)?.event.type === "turn-ended" ? page : undefined
    },
    10_000
  ).catch(() => transcript(client, turn.sessionId))
  const context = JSON.stringify({ task, entries: brief(entries) }, null, 1)
  expect(task.status, context).toBe(turn.mode === "task" ? "completed" : "in_progress")
  expectWholeTranscript(entries, lastSeq, context)
  expect(entries.at(-1)?.event, context).toMatchObject({ type: "turn-ended", stopReason: "end_turn" })
  expect(said(entries)).toContain("finished")
  const session = await untilSnapshotSettled(client, turn.sessionId)
  // A completed task's session may already be put to sleep (its agent stopped): idle or stopped, never working.
  if (turn.mode === "conversation")
    expect(session.snapshot, context).toMatchObject({ activity: "idle", reason: "completed" })
  const lines = toolOutput(entries)
    .split("\n")
    .filter((l) => l.startsWith("tick"))
  expect(lines).toEqual(Array.from({ length: ticks }, (_, i) => `tick ${i + 1}`))
  return task
}

/**
 * The turn was lost with its node's process (killed, or stopped with the stack): the task moved on
 * (awaiting a follow-up, or failed at `running` with the reason; only awaiting when `nodeBack`, the
 * node running again), the snapshot is not working, and the transcript ends the turn as lost with its
 * tool call failed.
 */
export const untilLost = async (client: Api, turn: Turn, ms = 60_000, nodeBack = false) => {
  const task = await waitFor(
    `${turn.mode} ${turn.taskId} to leave running`,
    async () => {
      const task = await getTask(client, turn.taskId)
      return task.status === "failed" || task.status === "cancelled" || task.executionStep === "awaiting_followup"
        ? task
        : undefined
    },
    ms
  )
  const { entries, lastSeq } = await transcript(client, turn.sessionId)
  const context = JSON.stringify({ task, entries: brief(entries) }, null, 1)
  expectWholeTranscript(entries, lastSeq, context)
  const ended = entries.findLast((e) => e.event.type === "turn-ended")
  expect(ended?.event, context).toMatchObject({ stopReason: "lost", reason: "lost", source: "control_plane" })
  // The tool call it was inside (`run sleep 60`) is named among what was lost.
  const call = entries.find((e) => e.event.type === "tool-call")?.event.toolCallId
  if (call !== undefined)
    expect(
      ended?.event.lostToolCalls?.map((c: { toolCallId: string }) => c.toolCallId),
      context
    ).toContain(call)
  expect(said(entries)).not.toContain("too late")
  const session = await untilSnapshotSettled(client, turn.sessionId)
  // A node that came back says the turn was lost, and the session can go on: failing it would be a lie.
  if (nodeBack) expect(task.status, context).toBe("in_progress")
  if (task.status === "failed") {
    expect(task, context).toMatchObject({ errorStep: "running" })
    expect(task.errorReason).toContain("the turn in flight was lost")
    expect(session.status).toBe("failed")
  } else {
    expect(task, context).toMatchObject({ status: "in_progress", executionStep: "awaiting_followup" })
    expect(session, context).toMatchObject({ status: "active", snapshot: { activity: "idle", reason: "lost" } })
  }
  return task
}

/**
 * Nothing of the project is left working: no task at step `running`, no session `prompting` or
 * `recovering`, every session's snapshot agrees with its transcript's end.
 */
export const expectNothingWorking = async (client: Api, projectId: string) => {
  const tasks = await client.call("GET", `/projects/${projectId}/tasks?limit=200`)
  expect(tasks.status).toBe(200)
  // biome-ignore lint/suspicious/noExplicitAny: API JSON
  const running = tasks.body.tasks.filter((t: any) => t.status === "in_progress" && t.executionStep === "running")
  expect(running, "tasks left running").toEqual([])
  const sessions = await client.call("GET", `/projects/${projectId}/sessions?limit=200`)
  expect(sessions.status).toBe(200)
  const working = sessions.body.sessions.filter(
    // biome-ignore lint/suspicious/noExplicitAny: API JSON
    (s: any) => s.snapshot?.activity === "prompting" || s.snapshot?.activity === "recovering"
  )
  expect(working, "sessions left working").toEqual([])
}

/** The pids of processes whose command line matches `pattern` exactly as `pgrep -f` does. */
export const pids = async (pattern: string) => {
  const { stdout } = await exec("pgrep", ["-f", pattern]).catch(() => ({ stdout: "" }))
  return stdout.split("\n").filter(Boolean).map(Number)
}

/** A server process's pid and its children's (Postgres's backends), for a signal to the whole server. */
export const processTree = async (pid: number): Promise<Array<number>> => {
  const children = (await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => ""))
    .split(" ")
    .filter(Boolean)
    .map(Number)
  return [pid, ...(await Promise.all(children.map(processTree))).flat()]
}

/**
 * Processes of the stack in `dataDir` still alive: those started in it (cwd inside it: Postgres, agents
 * and their tools in workspaces) or given it (`SAM_DATA_DIR`: vm-agents), optionally only those whose
 * command line contains `command`.
 */
export const stackProcesses = async (dataDir: string, command?: string) => {
  const found: Array<{ pid: number; cmdline: string }> = []
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue
    const [cwd, environ, cmdline] = await Promise.all([
      readlink(`/proc/${name}/cwd`).catch(() => ""),
      readFile(`/proc/${name}/environ`, "utf8").catch(() => ""),
      readFile(`/proc/${name}/cmdline`, "utf8").catch(() => "")
    ])
    const ours = cwd.startsWith(`${dataDir}/`) || environ.split("\0").includes(`SAM_DATA_DIR=${dataDir}`)
    const line = cmdline.split("\0").join(" ").trim()
    if (ours && line !== "" && (command === undefined || line.includes(command)))
      found.push({ pid: Number(name), cmdline: line })
  }
  return found
}

/**
 * A feed connection that follows `sessionIds` from their first entry (`afterSeq` 0) and keeps the seq
 * of every entry it gets (`session.event`, `session.events`), for a check that a client saw each entry once, in order, through a fault
 * the gateway lived through (the feed re-reads from the last seq it sent after a NATS reconnect).
 */
export const watchFeed = async (gateway: string, client: Api, sessionIds: ReadonlyArray<string>) => {
  const WS = await nodeWebSocket()
  // Opened as a client would, again until it is (the gateway may refuse the upgrade during an outage).
  const socket = await waitFor(
    "the feed connection",
    () =>
      new Promise<InstanceType<typeof WS> | undefined>((done) => {
        const socket = new WS(`${gateway.replace("http", "ws")}/api/v1/feed`, {
          headers: { authorization: `Bearer ${client.token}` }
        })
        socket.once("open", () => done(socket))
        socket.once("error", () => done(undefined))
      }),
    15_000
  )
  const seqs = new Map<string, Array<number>>(sessionIds.map((id) => [id, []]))
  const errors: Array<unknown> = []
  let closed: string | undefined
  socket.on("message", (data) => {
    const frame = JSON.parse(String(data))
    if (frame.type === "ping") socket.send(JSON.stringify({ type: "pong" }))
    // a transcript's run comes as one `session.events` frame of its entries
    for (const one of framesOf(frame)) if (one.type === "session.event") seqs.get(one.sessionId)?.push(one.seq)
    if (frame.type === "error") errors.push(frame)
  })
  socket.on("close", (code, reason) => (closed = `${code} ${reason}`))
  socket.send(
    JSON.stringify({ type: "subscribe", sessions: sessionIds.map((sessionId) => ({ sessionId, afterSeq: 0 })) })
  )
  return {
    /** every seq of the session's transcript came once, in order, and the connection held */
    expectWhole: async (sessionId: string) => {
      const { lastSeq } = await transcript(client, sessionId)
      await waitFor(
        `the feed to deliver ${sessionId} up to seq ${lastSeq}`,
        async () => (seqs.get(sessionId) ?? []).includes(lastSeq),
        10_000
      ).catch(() => undefined)
      expect(closed, "the feed connection closed").toBeUndefined()
      expect(
        seqs.get(sessionId),
        `what the feed delivered of ${sessionId} (error frames: ${JSON.stringify(errors)})`
      ).toEqual(Array.from({ length: lastSeq }, (_, i) => i + 1))
    },
    close: () => socket.close()
  }
}

/**
 * The product's own reconnecting client (`FeedClient`) following `sessionIds` from their start, for a
 * fault the gateway does not live through (the stack stopped and started again): once the gateway is
 * back it subscribes again from the last seq it delivered, and must deliver each seq once, in order.
 */
export const followWithClient = (gateway: string, client: Api, sessionIds: ReadonlyArray<string>) => {
  const seqs = new Map<string, Array<number>>(sessionIds.map((id) => [id, []]))
  const feed = new FeedClient({
    baseUrl: gateway,
    token: client.token,
    sessions: sessionIds.map((sessionId) => ({ sessionId, afterSeq: 0 })),
    maxBackoffMs: 2_000,
    onFrame: (frame) => {
      if (frame.type === "session.event") seqs.get(frame.sessionId)?.push(frame.seq)
    }
  })
  return {
    /** the client has delivered the session's transcript as it is now (it is connected and live) */
    caughtUp: async (sessionId: string) => {
      const { lastSeq } = await transcript(client, sessionId)
      await waitFor(
        `the client to catch up with ${sessionId}`,
        async () => (seqs.get(sessionId) ?? []).includes(lastSeq),
        20_000
      )
    },
    expectWhole: async (sessionId: string) => {
      const { lastSeq } = await transcript(client, sessionId)
      await waitFor(
        `the client to deliver ${sessionId} up to seq ${lastSeq}`,
        async () => (seqs.get(sessionId) ?? []).includes(lastSeq),
        20_000
      ).catch(() => undefined)
      expect(seqs.get(sessionId), `what FeedClient delivered of ${sessionId}`).toEqual(
        Array.from({ length: lastSeq }, (_, i) => i + 1)
      )
      expect(feed.stats.gaps, "gaps FeedClient saw").toBe(0)
      expect(feed.stats.connections, "FeedClient reconnected").toBeGreaterThan(1)
    },
    close: () => feed.close()
  }
}
