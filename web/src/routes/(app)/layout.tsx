import { $, component$, Slot, useSignal } from "@builder.io/qwik"
import { Form, type RequestHandler, routeAction$, routeLoader$, useLocation } from "@builder.io/qwik-city"
import * as Api from "@sam/bus/api"
import { Bell } from "~/components/Bell"
import { Link } from "~/components/Link"
import { clientOf, load, run, SESSION_COOKIE } from "~/lib/server"

export const onRequest: RequestHandler = (event) => {
  if (!event.cookie.get(SESSION_COOKIE)) {
    throw event.redirect(302, `/signin?next=${encodeURIComponent(event.url.pathname + event.url.search)}`)
  }
}

export const useMe = routeLoader$((event) => load(event, clientOf(event).call(Api.AuthEndpoints.me)))

export const useSignOut = routeAction$(async (_, event) => {
  await run(clientOf(event).call(Api.AuthEndpoints.logout))
  event.cookie.delete(SESSION_COOKIE, { path: "/" })
  throw event.redirect(302, "/signin")
})

const NAV = [
  { href: "/projects", label: "Projects" },
  { href: "/nodes", label: "Nodes" },
  { href: "/settings", label: "Settings" }
]

export default component$(() => {
  const me = useMe()
  const signOut = useSignOut()
  const loc = useLocation()
  const navOpen = useSignal(false)
  const toggleTheme = $(() => {
    const root = document.documentElement
    const next = root.dataset.theme === "light" ? "dark" : "light"
    root.dataset.theme = next
    try {
      localStorage.setItem("sam-theme", next)
    } catch {}
  })
  return (
    <div class="shell">
      <header class="topbar">
        <Link class="brand" href="/projects" aria-label="SAM home">
          <img src="/favicon.svg" alt="" width={26} height={26} />
          <span>SAM</span>
        </Link>
        <nav class={["nav", navOpen.value && "open"]} aria-label="Main">
          {NAV.map((item) => (
            <Link
              key={item.href}
              href={item.href}
              aria-current={loc.url.pathname.startsWith(item.href) ? "page" : undefined}
              onClick$={() => {
                navOpen.value = false
              }}
            >
              {item.label}
            </Link>
          ))}
        </nav>
        <span class="spacer" />
        <Bell />
        <button
          class="btn btn-ghost btn-icon"
          type="button"
          aria-label="Switch light or dark theme"
          onClick$={toggleTheme}
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
            <path d="M12 3a9 9 0 1 0 9 9 7 7 0 0 1-9-9z" />
          </svg>
        </button>
        <span class="muted hide-phone" style={{ fontSize: "var(--text-sm)" }}>
          {me.value.displayName}
        </span>
        <Form action={signOut} class="hide-phone">
          <button class="btn btn-sm" type="submit">
            Sign out
          </button>
        </Form>
        <button
          class="btn btn-ghost btn-icon drawer-toggle"
          type="button"
          aria-label="Menu"
          aria-expanded={navOpen.value}
          onClick$={() => {
            navOpen.value = !navOpen.value
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
            <path d="M4 6h16M4 12h16M4 18h16" />
          </svg>
        </button>
      </header>
      <div
        class={["backdrop", navOpen.value && "open"]}
        onClick$={() => {
          navOpen.value = false
        }}
      />
      <Slot />
    </div>
  )
})
