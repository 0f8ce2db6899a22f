import { $, component$, useSignal, useStore, useVisibleTask$ } from "@builder.io/qwik"
import { useNavigate } from "@builder.io/qwik-city"
import * as Api from "@sam/bus/api"
import { api, call, onFrame } from "~/lib/browser"
import { newestFirst } from "~/lib/notifications"
import { relativeTime } from "~/lib/sessions"

type Tab = "priority" | "updates" | "all"

/** The unread Priority count as the bell shows it. */
export const badgeText = (count: number) => (count > 99 ? "99+" : String(count))

/** The notification bell: unread Priority count and a panel with Priority / Updates / All, live. */
export const Bell = component$(() => {
  const open = useSignal(false)
  const tab = useSignal<Tab>("priority")
  const state = useStore({
    items: [] as Array<Api.Notification>,
    loaded: false,
    // Counted by the API over all my unread notifications, not over the page shown.
    counts: { unread: 0, priority: 0, updates: 0 } as Api.UnreadCounts
  })
  const nav = useNavigate()

  const recount = $(async () => {
    const result = await call(api.call(Api.NotificationEndpoints.unreadCounts))
    if (result.ok) state.counts = result.value
  })

  const reload = $(async () => {
    const result = await call(api.call(Api.NotificationEndpoints.listNotifications, { query: { limit: 200 } }))
    if (result.ok) {
      state.items = result.value.notifications
      state.loaded = true
    }
  })

  // biome-ignore lint/correctness/noQwikUseVisibleTask: the live feed is a browser socket (house style: live sockets only)
  useVisibleTask$(({ cleanup }) => {
    reload()
    recount()
    const stop = onFrame((frame) => {
      if (frame.type === "event" && frame.eventType === "notification.created") {
        const body = frame.body as { notification?: Api.Notification }
        const n = body.notification
        if (n !== undefined && !state.items.some((item) => item.id === n.id)) {
          // in the list's order (newest event first, as the API lists them): one that arrives late goes in its place
          state.items = [...state.items, n].sort(newestFirst)
          recount()
        }
      }
      if (frame.type === "hello") {
        reload()
        recount()
      }
    })
    cleanup(() => stop())
  })

  const unreadPriority = state.counts.priority
  const shown = state.items.filter((n) =>
    tab.value === "all" ? true : tab.value === "priority" ? n.priority : !n.priority
  )
  const countOf = (t: Tab) =>
    t === "all" ? state.counts.unread : t === "priority" ? state.counts.priority : state.counts.updates

  const markRead = $(async (id: string) => {
    const result = await call(api.call(Api.NotificationEndpoints.readNotification, { params: { notificationId: id } }))
    if (result.ok) state.items = state.items.map((n) => (n.id === id ? result.value : n))
    await recount()
  })

  return (
    <div class="bell">
      <button
        class="btn btn-ghost btn-icon"
        type="button"
        aria-label={`Notifications, ${unreadPriority} unread priority`}
        aria-expanded={open.value}
        aria-haspopup="dialog"
        data-testid="bell"
        onClick$={() => {
          open.value = !open.value
        }}
      >
        <svg
          width="20"
          height="20"
          viewBox="0 0 24 24"
          fill="none"
          stroke="currentColor"
          stroke-width="2"
          aria-hidden="true"
        >
          <path d="M6 8a6 6 0 1 1 12 0c0 7 3 9 3 9H3s3-2 3-9" />
          <path d="M10.3 21a1.94 1.94 0 0 0 3.4 0" />
        </svg>
        {unreadPriority > 0 && (
          <span class="bell-count" data-testid="bell-count">
            {badgeText(unreadPriority)}
          </span>
        )}
      </button>
      {open.value && (
        <div
          class="panel glass"
          role="dialog"
          aria-label="Notifications"
          onKeyDown$={(event) => {
            if (event.key === "Escape") open.value = false
          }}
        >
          <div class="panel-head">
            <strong>Notifications</strong>
            <button
              class="btn btn-sm"
              type="button"
              onClick$={async () => {
                const result = await call(api.call(Api.NotificationEndpoints.readAllNotifications))
                if (result.ok) {
                  const now = new Date().toISOString()
                  state.items = state.items.map((n) => (n.readAt === null ? { ...n, readAt: now } : n))
                }
                await recount()
              }}
            >
              Mark all read
            </button>
          </div>
          <div class="tabs" role="tablist">
            {(["priority", "updates", "all"] as const).map((t) => (
              <button
                key={t}
                class="tab"
                type="button"
                role="tab"
                aria-selected={tab.value === t}
                data-testid={`tab-${t}`}
                onClick$={() => {
                  tab.value = t
                }}
              >
                {t === "priority" ? "Priority" : t === "updates" ? "Updates" : "All"}
                {countOf(t) > 0 && (
                  <span class="badge" style={{ marginLeft: "6px" }}>
                    {badgeText(countOf(t))}
                  </span>
                )}
              </button>
            ))}
          </div>
          <ul class="notif-list" role="tabpanel" data-testid="notifications">
            {!state.loaded && <li class="empty">Loading…</li>}
            {state.loaded && shown.length === 0 && <li class="empty">Nothing here.</li>}
            {shown.map((n) => (
              <li key={n.id} class={["notif", n.readAt === null && "unread"]} data-type={n.type}>
                <button
                  class="notif-open"
                  type="button"
                  onClick$={async () => {
                    await markRead(n.id)
                    open.value = false
                    if (n.sessionId !== null) await nav(`/projects/${n.projectId}/chat/${n.sessionId}`)
                  }}
                >
                  <span class="notif-title">{n.title}</span>
                  <span class="muted" style={{ fontSize: "var(--text-xs)" }}>
                    {relativeTime(n.createdAt)}
                  </span>
                  {n.body && <span class="notif-body">{n.body}</span>}
                </button>
                {n.readAt === null && (
                  <button class="btn btn-sm btn-ghost" type="button" onClick$={() => markRead(n.id)}>
                    Mark read
                  </button>
                )}
              </li>
            ))}
          </ul>
        </div>
      )}
    </div>
  )
})
