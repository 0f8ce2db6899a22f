import { $, component$, type NoSerialize, noSerialize, useStore, useTask$, useVisibleTask$ } from "@builder.io/qwik"
import { type DocumentHead, routeLoader$, useNavigate } from "@builder.io/qwik-city"
import * as Api from "@sam/bus/api"
import { Composer, type ComposerProfile, type SendOptions } from "~/components/chat/Composer"
import { ItemView } from "~/components/chat/ItemView"
import { StatusIcon } from "~/components/chat/StatusIcon"
import { Link } from "~/components/Link"
import { api, call, feed, onFrame, onStatus } from "~/lib/browser"
import { clientOf, load, loadAll, noCall } from "~/lib/server"
import {
  ATTENTION_LABEL,
  attentionOf,
  elapsed,
  openedSession,
  relativeTime,
  STAGES,
  STEP_LABEL,
  stageIndex,
  TERMINAL,
  titleOf
} from "~/lib/sessions"
import { type Item, Timeline } from "~/lib/timeline"
import { useMe } from "~/routes/(app)/layout"

type Session = Api.Session
type Task = Api.Task

const STARTERS = [
  "say Hello! What can you do?",
  "think about the repository\nplan Read the code|Run the tests|Summarise\nrun ls\nsay Here is what I found.",
  "run git log --oneline -5\nsay Those are the latest commits.",
  "ask-permission edit README.md"
]
const STARTER_LABELS = [
  "Say hello",
  "Look around the repository",
  "Summarise the latest commits",
  "Ask before editing a file"
]

type Usage = NonNullable<Session["usage"]>

const count = (n: number) => (n >= 10_000 ? `${Math.round(n / 1000)}k` : n.toLocaleString("en"))

/** What the agent reported of its usage, in a few characters: tokens, context, cost. */
const usageLabel = (usage: Usage) =>
  [
    usage.totalTokens > 0 ? `${count(usage.totalTokens)} tokens` : "",
    usage.context && usage.totalTokens === 0 ? `${count(usage.context.usedTokens)} in context` : "",
    usage.cost ? `${usage.cost.amount.toFixed(2)} ${usage.cost.currency}` : ""
  ]
    .filter((part) => part !== "")
    .join(" · ")

const usageTitle = (usage: Usage) =>
  [
    `${usage.turns} turn(s) reported: ${usage.inputTokens} in, ${usage.outputTokens} out, ${usage.totalTokens} total`,
    usage.context ? `context ${usage.context.usedTokens} of ${usage.context.sizeTokens} tokens` : "",
    usage.cost ? `cost so far ${usage.cost.amount} ${usage.cost.currency}` : ""
  ]
    .filter((part) => part !== "")
    .join("; ")

/** How long a new task's page waits for its session to open before it shows the task's steps instead. */
const SESSION_WAIT_MS = 500

/** How many timeline items are rendered at once; scrolling up renders more. */
const WINDOW = 150

export const useChat = routeLoader$(async (event) => {
  const client = clientOf(event)
  const projectId = event.params.projectId!
  const sessionId = (event.params.sessionId ?? "").split("/")[0] || null
  const taskParam = event.url.searchParams.get("task")
  // all at once (a page load waited for three rounds of them): the session and the task asked for with the rest
  const [project, sessions, tasks, profiles, agents, session, asked] = await loadAll(event, [
    client.call(Api.ProjectEndpoints.getProject, { params: { projectId } }),
    client.call(Api.SessionEndpoints.listSessions, { params: { projectId }, query: { limit: 200 } }),
    client.call(Api.TaskEndpoints.listTasks, { params: { projectId }, query: { limit: 200 } }),
    client.call(Api.AgentEndpoints.listProfiles, { params: { projectId } }),
    client.call(Api.AgentEndpoints.listAgents),
    sessionId === null ? noCall : client.call(Api.SessionEndpoints.getSession, { params: { sessionId } }),
    sessionId !== null || taskParam === null
      ? noCall
      : client.call(Api.TaskEndpoints.getTask, { params: { taskId: taskParam } })
  ] as const)
  let task: Task | null = asked
  if (session !== null && session.taskId !== null) {
    const taskId = session.taskId
    // the session's task is one of the project's newest as a rule, read with them
    task =
      tasks.tasks.find((t) => t.id === taskId) ??
      (await load(event, client.call(Api.TaskEndpoints.getTask, { params: { taskId } })))
  } else if (task !== null) {
    // The task names its session a moment before the session is written: go there once it is listed.
    if (task.sessionId !== null && sessions.sessions.some((s) => s.id === task?.sessionId))
      throw event.redirect(302, `/projects/${projectId}/chat/${task.sessionId}`)
  }
  const prompts: Record<string, string> = {}
  for (const t of tasks.tasks) prompts[t.id] = t.prompt
  if (task !== null) prompts[task.id] = task.prompt
  const profileOptions: Array<ComposerProfile> = profiles.profiles.map((p) => ({
    id: p.id,
    name: p.name,
    agentName: agents.agents.find((a) => a.id === p.agent)?.name ?? p.agent,
    taskMode: p.taskMode
  }))
  return {
    project,
    sessions: sessions.sessions,
    prompts,
    session,
    task,
    profiles: profileOptions,
    serverNow: Date.now()
  }
})

const byActivity = (a: Session, b: Session) => Date.parse(b.updatedAt) - Date.parse(a.updatedAt)

/** True when snapshot `a` is strictly newer than `b` (a later prompt, or the same prompt updated later). */
const newer = (a: Session["snapshot"], b: Session["snapshot"]) =>
  a !== null &&
  (b === null ||
    a.promptEpoch > b.promptEpoch ||
    (a.promptEpoch === b.promptEpoch && Date.parse(a.updatedAt) > Date.parse(b.updatedAt)))

export default component$(() => {
  const chat = useChat()
  const me = useMe()
  const nav = useNavigate()
  const state = useStore({
    sessions: [...chat.value.sessions].sort(byActivity),
    prompts: chat.value.prompts,
    session: chat.value.session,
    task: chat.value.task,
    items: [] as Array<Item>,
    /**
     * Follow-ups sent while the agent worked whose turn has not begun (the transcript's `prompt-queued` entries,
     * so a reload or another device shows them too): the node runs them in order after the turn in progress.
     */
    queued: [] as Array<{ readonly epoch: number; readonly seq: number; readonly text: string }>,
    startedEpoch: 0,
    windowStart: 0,
    loaded: chat.value.session === null,
    connection: "connecting" as "connecting" | "open" | "reconnecting",
    now: chat.value.serverNow,
    search: "",
    drawer: false,
    interrupting: false,
    actionError: null as string | null,
    more: undefined as NoSerialize<() => void> | undefined
  })

  // A navigation (another session, a new chat) brings new loader data: start from it.
  useTask$(({ track }) => {
    const data = track(() => chat.value)
    state.sessions = [...data.sessions].sort(byActivity)
    state.prompts = data.prompts
    state.session = data.session
    state.task = data.task
    state.items = []
    state.queued = []
    state.startedEpoch = 0
    state.windowStart = 0
    state.loaded = data.session === null
    state.interrupting = false
    state.actionError = null
    state.drawer = false
  })

  // The live feed: the project's lifecycle events, and the open session's transcript from seq 0.
  // biome-ignore lint/correctness/noQwikUseVisibleTask: the live feed is a browser socket (house style: live sockets only)
  useVisibleTask$(({ track, cleanup }) => {
    const projectId = track(() => chat.value.project.id)
    const sessionId = track(() => chat.value.session?.id ?? null)
    const taskId = track(() => chat.value.task?.id ?? null)
    const timeline = new Timeline()
    // The timeline element is whatever is rendered now (a navigation may replace it): never cached.
    const current = () => document.querySelector<HTMLElement>(".timeline") ?? undefined
    let windowSize = WINDOW
    let stick = true
    let anchor: number | undefined
    let frame = 0
    let catchingUp: ReturnType<typeof setTimeout> | undefined
    const flush = () => {
      frame = 0
      clearTimeout(catchingUp)
      catchingUp = undefined
      const start = Math.max(0, timeline.items.length - windowSize)
      state.windowStart = start
      state.items = timeline.items.slice(start)
      state.startedEpoch = timeline.startedEpoch
      if (state.queued !== timeline.queued) state.queued = timeline.queued
    }
    /**
     * Render on the next frame. While the transcript is still coming (before `caught-up`), at most every
     * 250 ms: its runs come faster than the page renders, and a render after each held the next run back
     * (10,000 events: 30 runs in 0.9 s, of which taking them in was 0.09 s).
     */
    const schedule = () => {
      if (!state.loaded) catchingUp ??= setTimeout(flush, 250)
      else if (frame === 0) frame = requestAnimationFrame(flush)
    }
    state.more = noSerialize(() => {
      const el = current()
      if (state.windowStart === 0 || el === undefined || anchor !== undefined) return
      anchor = el.scrollHeight - el.scrollTop
      windowSize += WINDOW
      schedule()
    })

    // Follow new output only while the reader is at the bottom; near the top, render the window before.
    const onScroll = (event: Event) => {
      const el = current()
      if (el === undefined || event.target !== el) return
      stick = el.scrollHeight - el.scrollTop - el.clientHeight < 60
      if (el.scrollTop < 40 && state.windowStart > 0) state.more?.()
    }
    const observer = new MutationObserver((records) => {
      const el = current()
      if (el === undefined || !records.some((record) => el.contains(record.target))) return
      if (anchor !== undefined) {
        el.scrollTop = el.scrollHeight - anchor
        anchor = undefined
      } else if (stick) el.scrollTop = el.scrollHeight
    })
    observer.observe(document.body, { childList: true, subtree: true, characterData: true })
    document.addEventListener("scroll", onScroll, { capture: true, passive: true })
    const attaching = requestAnimationFrame(() => {
      const el = current()
      if (el !== undefined) el.scrollTop = el.scrollHeight
    })

    let refreshTimer: ReturnType<typeof setTimeout> | undefined
    // Bumped by every live change: a read that was in flight meanwhile is older than what the page
    // shows (it would bring a failed session back as idle), and the refresh that change asked for follows.
    let live = 0
    // Reads in a row that were set aside for a live change, or that failed: while the agent streams,
    // every read overlaps a change, and a read lost to the network has no event to ask for another.
    let discarded = 0
    let failures = 0
    // Set once this page (or this session of it) is left: a read still in flight then must not act, or it would take
    // the reader back to the chat it left (a page waiting on its task goes to the task's session when a read says so).
    let stopped = false
    const refresh = (delay = 150) => {
      clearTimeout(refreshTimer)
      if (stopped) return
      refreshTimer = setTimeout(async () => {
        const started = live
        const [list, one, task] = await Promise.all([
          call(api.call(Api.SessionEndpoints.listSessions, { params: { projectId }, query: { limit: 200 } })),
          sessionId === null ? undefined : call(api.call(Api.SessionEndpoints.getSession, { params: { sessionId } })),
          state.task === null
            ? undefined
            : call(api.call(Api.TaskEndpoints.getTask, { params: { taskId: state.task.id } }))
        ])
        if (stopped) return
        // A page waiting on its task goes to the task's session once that session exists (the task names it
        // a moment before the session is written), whatever came live meanwhile.
        const opened = task?.ok && sessionId === null && state.task?.id === task.value.id ? task.value.sessionId : null
        if (opened !== null && list.ok && list.value.sessions.some((s) => s.id === opened)) {
          nav(`/projects/${projectId}/chat/${opened}`, { replaceState: true })
          return
        }
        const lost = [list, one, task].some((r) => r?.ok === false && (r.error.status === 0 || r.error.status >= 500))
        if (lost) {
          // Read again, later each time (at most every 5 s): the page must not wait for an event that may not come.
          failures++
          return refresh(Math.min(500 * 2 ** failures, 5_000))
        }
        failures = 0
        if (live !== started && discarded < 3) {
          discarded++
          return refresh()
        }
        discarded = 0
        if (list.ok) {
          // A read that raced a live event must not bring an older snapshot back.
          const known = new Map(state.sessions.map((s) => [s.id, s]))
          state.sessions = list.value.sessions
            .map((s) => {
              const mine = known.get(s.id)
              return mine !== undefined && newer(mine.snapshot, s.snapshot) ? { ...s, snapshot: mine.snapshot } : s
            })
            .sort(byActivity)
        }
        if (one?.ok && state.session?.id === one.value.id) {
          const mine = state.session.snapshot
          state.session = newer(mine, one.value.snapshot) ? { ...one.value, snapshot: mine } : one.value
          const fresh = state.session
          state.sessions = state.sessions.map((s) => (s.id === fresh.id ? { ...s, snapshot: fresh.snapshot } : s))
        }
        if (task?.ok && state.task?.id === task.value.id) state.task = task.value
        // The task named a session not written yet: look again shortly.
        if (opened !== null) refresh(300)
      }, delay)
    }

    const patchSession = (id: string, patch: Partial<Session>) => {
      state.sessions = state.sessions.map((s) => (s.id === id ? { ...s, ...patch } : s)).sort(byActivity)
      if (state.session?.id === id) state.session = { ...state.session, ...patch }
    }

    const stopFrames = onFrame((f) => {
      switch (f.type) {
        case "hello":
          refresh()
          return
        case "snapshot":
          live++
          if (f.sessionId === sessionId && f.snapshot !== null && !newer(state.session?.snapshot ?? null, f.snapshot)) {
            patchSession(f.sessionId, { snapshot: f.snapshot })
          }
          return
        case "session.event":
          if (f.sessionId === sessionId && timeline.add(f)) schedule()
          return
        case "caught-up":
          if (f.sessionId === sessionId) {
            state.loaded = true
            schedule()
            // What the page loaded was read before this subscription: a change in between (a task that
            // failed while the page navigated to its session) came as no live event. Read once more.
            refresh()
          }
          return
        case "event": {
          if (f.projectId !== projectId) return
          live++
          const body = (f.body ?? {}) as Record<string, unknown>
          const now = new Date().toISOString()
          // The task this page waits on has its session (written in the ledger with the event): go there now,
          // not after a read of the lists (the answer may already be on its way).
          const opened = openedSession(f, projectId)
          if (opened !== null && sessionId === null && opened.taskId === state.task?.id && !stopped) {
            stopped = true
            clearTimeout(refreshTimer)
            nav(`/projects/${projectId}/chat/${opened.sessionId}`, { replaceState: true })
            return
          }
          if (f.eventType === "session.activity" && typeof body.sessionId === "string") {
            const snapshot = body.snapshot as Session["snapshot"]
            const mine = state.sessions.find((s) => s.id === body.sessionId)?.snapshot ?? null
            if (!newer(mine, snapshot)) patchSession(body.sessionId, { snapshot, updatedAt: now })
            if ((body.snapshot as { activity?: string } | undefined)?.activity !== "prompting")
              state.interrupting = false
          } else if (f.eventType === "session.failed" && typeof body.sessionId === "string") {
            patchSession(body.sessionId, { status: "failed", errorReason: String(body.reason ?? ""), updatedAt: now })
          } else if (f.eventType === "task.status" && typeof body.taskId === "string") {
            const status = body.status as Task["status"]
            state.sessions = state.sessions.map((s) => (s.taskId === body.taskId ? { ...s, taskStatus: status } : s))
            if (state.session?.taskId === body.taskId) state.session = { ...state.session, taskStatus: status }
            if (state.task?.id === body.taskId) {
              state.task = {
                ...state.task,
                status,
                executionStep: (body.step as Task["executionStep"]) ?? state.task.executionStep,
                errorStep: (body.errorStep as string | null) ?? null,
                errorReason: (body.errorReason as string | null) ?? null,
                sessionId: (body.sessionId as Task["sessionId"]) ?? state.task.sessionId,
                workspaceId: (body.workspaceId as Task["workspaceId"]) ?? state.task.workspaceId
              }
            }
          }
          if (f.eventType.startsWith("session.") || f.eventType.startsWith("task.")) refresh()
          return
        }
        default:
          return
      }
    })
    const stopStatus = onStatus((s) => {
      state.connection =
        s.state === "open"
          ? "open"
          : state.connection === "open" || s.state === "closed"
            ? "reconnecting"
            : "connecting"
    })
    const client = feed()
    client.subscribe({ projects: [projectId], sessions: sessionId === null ? [] : [{ sessionId, afterSeq: 0 }] })
    const tick = setInterval(() => {
      state.now = Date.now()
    }, 1000)
    state.now = Date.now()
    if (taskId !== null && sessionId === null) refresh()

    cleanup(() => {
      stopped = true
      stopFrames()
      stopStatus()
      clearInterval(tick)
      clearTimeout(refreshTimer)
      if (frame !== 0) cancelAnimationFrame(frame)
      clearTimeout(catchingUp)
      cancelAnimationFrame(attaching)
      observer.disconnect()
      document.removeEventListener("scroll", onScroll, { capture: true })
      client.unsubscribe({ projects: [projectId], sessions: sessionId === null ? [] : [sessionId] })
    })
  })

  const projectId = chat.value.project.id
  const session = state.session
  const task = state.task
  const taskEnded = task !== null && TERMINAL.has(task.status)
  const status = session === null ? null : attentionOf(session)
  const working = status === "working" || status === "needs_input"
  const provisioning =
    task !== null && !taskEnded && (task.executionStep === null || stageIndex(task.executionStep) < STAGES.length)
  const failedReason =
    task?.status === "failed"
      ? (task.errorReason ?? "the task failed")
      : session?.status === "failed"
        ? (session.errorReason ?? "the session failed")
        : null
  const ended = session !== null && (session.status === "stopped" || session.status === "failed" || taskEnded)
  // A session's agent runs with its starter's credentials, on their node: only they drive it; they or a project
  // owner may end its turn (ADR 0047). The API refuses the rest; the page does not offer it.
  const starter = session?.startedBy ?? task?.createdBy ?? null
  const mine = starter === null || starter === me.value.userId
  const mayEnd = mine || chat.value.project.role === "owner"
  const pending = mine ? (session?.snapshot?.permissions ?? []).map((p) => p.requestId) : []
  const query = state.search.trim().toLowerCase()
  const shown = state.sessions.filter(
    (s) =>
      query === "" ||
      s.id.toLowerCase().includes(query) ||
      titleOf(s.id, s.taskId === null ? undefined : state.prompts[s.taskId])
        .toLowerCase()
        .includes(query)
  )
  const title =
    session !== null
      ? titleOf(session.id, session.taskId === null ? undefined : state.prompts[session.taskId])
      : task !== null
        ? titleOf(task.id, task.prompt)
        : "New chat"

  const submit = $(async (text: string, options: SendOptions) => {
    // On a warm node a task's session opens a moment after the task is made: this page follows the project, so it
    // waits that moment for `session.opened` and goes straight to the conversation; otherwise to the task's page,
    // which shows its steps until the session opens. (Through the task's page, the answer waited for two page loads.)
    const from = location.href
    const opened = new Map<string, string>()
    let wake = () => {}
    const stop = onFrame((f) => {
      const session = openedSession(f, projectId)
      if (session === null) return
      opened.set(session.taskId, session.sessionId)
      wake()
    })
    try {
      const result = await call(
        api.call(Api.TaskEndpoints.createTask, {
          params: { projectId },
          body:
            options.profileId !== undefined
              ? { prompt: text, profileId: options.profileId, mode: options.mode }
              : { prompt: text, agent: options.agent as "demo", mode: options.mode }
        })
      )
      if (!result.ok) return result.error.message
      const taskId = result.value.id
      const sessionId =
        opened.get(taskId) ??
        (await new Promise<string | undefined>((resolve) => {
          const timer = setTimeout(() => resolve(undefined), SESSION_WAIT_MS)
          wake = () => {
            const found = opened.get(taskId)
            if (found === undefined) return
            clearTimeout(timer)
            resolve(found)
          }
        }))
      // The reader went elsewhere meanwhile: the task runs, its chat is in the list; the page is not taken back.
      if (location.href !== from) return null
      await nav(
        sessionId === undefined
          ? `/projects/${projectId}/chat?task=${taskId}`
          : `/projects/${projectId}/chat/${sessionId}`
      )
      return null
    } finally {
      stop()
    }
  })
  const followUp = $(async (text: string) => {
    if (state.session === null) return "no session"
    const sessionId = state.session.id
    const result = await call(
      api.call(Api.SessionEndpoints.promptSession, { params: { sessionId }, body: { prompt: text } })
    )
    if (!result.ok) return result.error.message
    return null
  })
  const interrupt = $(async () => {
    if (state.session === null) return
    state.interrupting = true
    const result = await call(api.call(Api.SessionEndpoints.cancelSession, { params: { sessionId: state.session.id } }))
    if (!result.ok) {
      state.interrupting = false
      state.actionError = result.error.message
    } else if (result.value.status === "idle") state.interrupting = false
  })
  const answer = $(async (requestId: string, optionId: string) => {
    if (state.session === null) return
    const result = await call(
      api.call(Api.SessionEndpoints.answerPermission, {
        params: { sessionId: state.session.id, requestId },
        body: { optionId }
      })
    )
    if (!result.ok) state.actionError = result.error.message
  })
  const retry = $(async () => {
    if (state.task === null) return
    const result = await call(api.call(Api.TaskEndpoints.retryTask, { params: { taskId: state.task.id } }))
    if (!result.ok) state.actionError = result.error.message
    else await nav(`/projects/${projectId}/chat?task=${result.value.id}`)
  })

  return (
    <div class="chat">
      <div
        class={["backdrop", state.drawer && "open"]}
        onClick$={() => {
          state.drawer = false
        }}
      />
      <aside
        class={["sidebar", state.drawer && "open"]}
        aria-label="Chats"
        data-testid="sidebar"
        onKeyDown$={(event) => {
          if (event.key === "Escape") state.drawer = false
        }}
      >
        <div class="sidebar-head">
          <h2 title={chat.value.project.repoUrl}>{chat.value.project.name}</h2>
          {state.connection === "reconnecting" && (
            <span class="badge badge-warning" title="Live updates paused">
              offline
            </span>
          )}
          <Link class="btn btn-ghost btn-icon" href={`/projects/${projectId}/settings`} aria-label="Project settings">
            <svg
              width="18"
              height="18"
              viewBox="0 0 24 24"
              fill="none"
              stroke="currentColor"
              stroke-width="2"
              aria-hidden="true"
            >
              <circle cx="12" cy="12" r="3" />
              <path d="M19.4 15a1.7 1.7 0 0 0 .3 1.8l.1.1a2 2 0 1 1-2.8 2.8l-.1-.1a1.7 1.7 0 0 0-1.8-.3 1.7 1.7 0 0 0-1 1.5V21a2 2 0 1 1-4 0v-.1a1.7 1.7 0 0 0-1.1-1.5 1.7 1.7 0 0 0-1.8.3l-.1.1a2 2 0 1 1-2.8-2.8l.1-.1a1.7 1.7 0 0 0 .3-1.8 1.7 1.7 0 0 0-1.5-1H3a2 2 0 1 1 0-4h.1a1.7 1.7 0 0 0 1.5-1.1 1.7 1.7 0 0 0-.3-1.8l-.1-.1a2 2 0 1 1 2.8-2.8l.1.1a1.7 1.7 0 0 0 1.8.3H9a1.7 1.7 0 0 0 1-1.5V3a2 2 0 1 1 4 0v.1a1.7 1.7 0 0 0 1 1.5 1.7 1.7 0 0 0 1.8-.3l.1-.1a2 2 0 1 1 2.8 2.8l-.1.1a1.7 1.7 0 0 0-.3 1.8V9a1.7 1.7 0 0 0 1.5 1H21a2 2 0 1 1 0 4h-.1a1.7 1.7 0 0 0-1.5 1z" />
            </svg>
          </Link>
        </div>
        <div class="stack" style={{ gap: "var(--space-2)" }}>
          <Link class="btn btn-primary" href={`/projects/${projectId}/chat`}>
            + New chat
          </Link>
          <div class="row" style={{ gap: "var(--space-2)", flexWrap: "nowrap" }}>
            <label class="sr-only" for="chat-search">
              Search chats
            </label>
            <input
              id="chat-search"
              class="input"
              type="search"
              placeholder="Search chats…"
              value={state.search}
              onInput$={(_, input) => {
                state.search = input.value
              }}
            />
            <Link class="btn btn-sm" href={`/projects/${projectId}/tasks`}>
              Tasks
            </Link>
          </div>
        </div>
        <ul class="sessions" data-testid="sessions">
          {shown.length === 0 && <li class="hint empty">{query === "" ? "No chats yet." : "No chat matches."}</li>}
          {shown.map((s) => {
            const st = attentionOf(s)
            return (
              <li key={s.id}>
                <Link
                  class="session-row"
                  href={`/projects/${projectId}/chat/${s.id}`}
                  aria-current={s.id === session?.id ? "page" : undefined}
                  data-session={s.id}
                  data-status={st}
                >
                  <StatusIcon status={st} />
                  <span class="session-title">
                    {titleOf(s.id, s.taskId === null ? undefined : state.prompts[s.taskId])}
                  </span>
                  <span class="session-meta">
                    <span>{s.mode === "task" ? "Task" : "Chat"}</span>
                    {st === "needs_input" && <span style={{ color: "var(--warning)" }}>Needs input</span>}
                    <span>{relativeTime(s.updatedAt, state.now)}</span>
                  </span>
                </Link>
              </li>
            )
          })}
        </ul>
      </aside>

      <section class="main" aria-label="Conversation">
        <header class="main-head">
          <h1 data-testid="chat-title">{title}</h1>
          {status !== null && (
            <span
              class={[
                "badge",
                status === "failed"
                  ? "badge-danger"
                  : status === "working"
                    ? "badge-success"
                    : status === "needs_input"
                      ? "badge-warning"
                      : ""
              ]}
              data-testid="session-status"
              data-status={status}
            >
              {ATTENTION_LABEL[status]}
            </span>
          )}
          {session !== null && <span class="badge hide-phone">{session.mode === "task" ? "Task" : "Chat"}</span>}
          {session?.usage && usageLabel(session.usage) !== "" && (
            <span class="badge hide-phone" data-testid="session-usage" title={usageTitle(session.usage)}>
              {usageLabel(session.usage)}
            </span>
          )}
          {session?.prUrl && (
            <a class="badge" href={session.prUrl} target="_blank" rel="noopener noreferrer" data-testid="pull-request">
              Pull request
            </a>
          )}
          <button
            class="btn btn-ghost btn-icon drawer-toggle"
            type="button"
            aria-label="Show chats"
            aria-expanded={state.drawer}
            data-testid="open-sessions"
            onClick$={() => {
              state.drawer = true
            }}
          >
            <svg
              width="22"
              height="22"
              viewBox="0 0 24 24"
              fill="none"
              stroke="currentColor"
              stroke-width="2"
              aria-hidden="true"
            >
              <path d="M8 6h13M8 12h13M8 18h13M3 6h.01M3 12h.01M3 18h.01" />
            </svg>
          </button>
        </header>

        <div class="banners">
          {state.connection === "reconnecting" && (
            <div class="banner" role="status" data-testid="connection-banner">
              <span style={{ flex: 1 }}>Reconnecting… live updates are paused; nothing is lost.</span>
              <button class="btn btn-sm" type="button" onClick$={() => feed().connect()}>
                Retry now
              </button>
            </div>
          )}
          {state.actionError !== null && (
            <div class="form-error row" role="alert">
              <span style={{ flex: 1 }}>{state.actionError}</span>
              <button
                class="btn btn-sm btn-ghost"
                type="button"
                onClick$={() => {
                  state.actionError = null
                }}
              >
                Dismiss
              </button>
            </div>
          )}
          {failedReason !== null && (
            <section class="failure" role="alert" data-testid="failure-card">
              <h2>{task?.status === "failed" ? "This task failed" : "This session failed"}</h2>
              {task?.errorStep && (
                <span class="hint">
                  At step: <span class="mono">{task.errorStep}</span>
                </span>
              )}
              <p style={{ margin: 0 }} data-testid="failure-reason">
                {failedReason}
              </p>
              {task !== null && mine && (
                <div>
                  <button class="btn" type="button" onClick$={retry}>
                    Retry
                  </button>
                </div>
              )}
            </section>
          )}
          {provisioning && task !== null && (
            <section class="provisioning" role="status" aria-live="polite" data-testid="provisioning">
              <div class="row">
                <strong style={{ flex: 1 }}>
                  {STAGES[Math.min(stageIndex(task.executionStep), STAGES.length - 1)]?.name} (
                  {Math.min(stageIndex(task.executionStep) + 1, STAGES.length)}/{STAGES.length})
                </strong>
                <span class="muted mono">{elapsed(task.createdAt, state.now)}</span>
              </div>
              <div class="stages" aria-hidden="true">
                {STAGES.map((stage, i) => (
                  <div
                    key={stage.name}
                    class="stage"
                    data-state={
                      i < stageIndex(task.executionStep)
                        ? "done"
                        : i === stageIndex(task.executionStep)
                          ? "current"
                          : "todo"
                    }
                  />
                ))}
              </div>
              <div class="stage-labels">
                {STAGES.map((stage) => (
                  <span key={stage.name}>{stage.name}</span>
                ))}
              </div>
              <span class="hint" data-testid="provisioning-step">
                {STEP_LABEL[task.executionStep ?? "node_selection"] ?? task.executionStep}
              </span>
              {task.workspaceId !== null && (
                <Link class="hint" href={`/workspaces/${task.workspaceId}`}>
                  View boot log
                </Link>
              )}
            </section>
          )}
        </div>

        {session === null && task === null ? (
          <div class="empty-chat" data-testid="empty-chat">
            <h2>What do you want to build?</h2>
            <p class="muted" style={{ margin: 0 }}>
              Describe the task and an agent will start working on it. The demo agent follows a little script: try one
              of these.
            </p>
            <div class="starters">
              {STARTERS.map((prompt, i) => (
                <button
                  key={prompt}
                  class="btn"
                  type="button"
                  onClick$={() => submit(prompt, { agent: "demo", mode: "conversation" })}
                >
                  {STARTER_LABELS[i]}
                </button>
              ))}
            </div>
          </div>
        ) : (
          // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling region must take focus to scroll by keyboard
          <div class="timeline" data-testid="timeline" aria-live="off" tabIndex={0}>
            {state.windowStart > 0 && (
              <button
                class="btn btn-sm"
                type="button"
                style={{ alignSelf: "center", width: "auto" }}
                onClick$={() => state.more?.()}
              >
                Show {Math.min(WINDOW, state.windowStart)} earlier
              </button>
            )}
            {session === null && task !== null && <div class="msg-user">{task.prompt}</div>}
            {session !== null && !state.loaded && <p class="hint">Loading the conversation…</p>}
            {state.items.map((item, i) => (
              <ItemView
                key={item.key}
                item={item}
                streaming={working && i === state.items.length - 1}
                pending={pending}
                onAnswer$={answer}
              />
            ))}
            {/* Between two turns the snapshot stays working (it follows the latest prompt): a prompt still waiting
                once the agent stopped working was lost with its turn (its node restarted, its task ended). */}
            {state.loaded &&
              state.queued.map((q) =>
                working && !ended ? (
                  <div key={`q${q.seq}`} class="msg-user queued" data-testid="queued-prompt">
                    {q.text}
                    <span class="queued-note">Queued: sent when the agent finishes this turn</span>
                  </div>
                ) : (
                  // a key of its own: under the waiting bubble's key Qwik kept the old element when the agent stopped
                  <div key={`u${q.seq}`} class="msg-user queued undelivered" data-testid="undelivered-prompt">
                    {q.text}
                    <span class="queued-note">Not delivered: the agent stopped before its turn began</span>
                  </div>
                )
              )}
          </div>
        )}

        <div>
          {session !== null && working && (
            <div class="working" role="status" data-testid="working-bar">
              <span class="working-dot" aria-hidden="true" />
              <span style={{ flex: 1 }}>
                {status === "needs_input"
                  ? mine
                    ? "Agent is waiting for your answer"
                    : "Agent is waiting for an answer"
                  : "Agent is working"}{" "}
                <span class="muted mono" data-testid="working-elapsed">
                  ({elapsed(session.snapshot?.promptStartedAt, state.now)})
                </span>
              </span>
              {mayEnd && (
                <button
                  class="btn btn-danger btn-sm"
                  type="button"
                  onClick$={interrupt}
                  disabled={state.interrupting}
                  data-testid="interrupt"
                >
                  {state.interrupting ? "Interrupting…" : "Interrupt"}
                </button>
              )}
            </div>
          )}
          {session === null && task === null ? (
            <Composer
              placeholder="Describe a task, or try: say hello"
              pickers
              profiles={chat.value.profiles}
              onSend$={submit}
              testId="new-chat-composer"
            />
          ) : session === null ? null : ended ? (
            <div class="composer">
              <div class="composer-box glass row">
                <span class="muted" style={{ flex: 1 }} data-testid="ended">
                  {task?.status === "completed" ? (
                    <>
                      The task is done
                      {task.branch ? (
                        <>
                          : its work is on branch <span class="mono">{task.branch}</span>
                        </>
                      ) : null}
                      .
                    </>
                  ) : (
                    "This session has ended."
                  )}
                </span>
                {task !== null && (
                  <Link class="btn" href={`/projects/${projectId}/tasks/${task.id}`}>
                    Task details
                  </Link>
                )}
                <Link class="btn btn-primary" href={`/projects/${projectId}/chat`}>
                  New chat
                </Link>
              </div>
            </div>
          ) : !mine ? (
            <div class="composer">
              <div class="composer-box glass row">
                <span class="muted" style={{ flex: 1 }} data-testid="not-yours">
                  Another member started this chat. Its agent works with their credentials, on their machine, so only
                  they can write to it.
                </span>
                <Link class="btn btn-primary" href={`/projects/${projectId}/chat`}>
                  New chat
                </Link>
              </div>
            </div>
          ) : (
            <Composer
              placeholder={
                !working
                  ? "Send a follow-up…"
                  : session?.mode === "task"
                    ? "The task ends when the agent finishes this turn: interrupt it to add to it"
                    : "Agent is working… your message will follow"
              }
              onSend$={followUp}
              testId="follow-up"
            />
          )}
        </div>
      </section>
    </div>
  )
})

export const head: DocumentHead = ({ resolveValue }) => ({ title: resolveValue(useChat).project.name })
