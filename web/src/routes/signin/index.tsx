import { component$ } from "@builder.io/qwik"
import { type DocumentHead, Form, routeAction$, routeLoader$ } from "@builder.io/qwik-city"
import * as Api from "@sam/bus/api"
import { Client } from "@sam/gateway/client"
import { Either } from "effect"
import { config, run, SESSION_COOKIE } from "~/lib/server"

/** Only same-site paths: `next` must not send a signed-in user elsewhere. */
const safeNext = (next: string | null) => (next !== null && /^\/(?!\/)/.test(next) ? next : "/projects")

export const useSignInPage = routeLoader$((event) => ({
  github: config.github,
  error: event.url.searchParams.get("error")
}))

export const useSignIn = routeAction$(async (form, event) => {
  const login = String(form.login ?? "")
  const password = String(form.password ?? "")
  if (login === "" || password === "") {
    return event.fail(400, { message: "Enter your login and password.", login })
  }
  // The API's sign-in throttle counts this attempt against the browser's address, not this server's loopback one.
  const client = Client.make({
    baseUrl: config.apiUrl !== "" ? config.apiUrl : event.url.origin,
    headers: config.clientHeaders(event.clientConn.ip)
  })
  const result = await run(client.call(Api.AuthEndpoints.login, { body: { login, password } }))
  if (Either.isLeft(result)) {
    const message =
      result.left.status === 401
        ? "That login and password do not match."
        : result.left.status === 429
          ? "Too many attempts: wait a minute and try again."
          : result.left.message
    return event.fail(result.left.status || 502, { message, login })
  }
  event.cookie.set(SESSION_COOKIE, result.right.sessionToken, {
    path: "/",
    httpOnly: true,
    sameSite: "lax",
    expires: new Date(result.right.expiresAt)
  })
  throw event.redirect(302, safeNext(event.url.searchParams.get("next")))
})

export default component$(() => {
  const page = useSignInPage()
  const action = useSignIn()
  const failed = action.value?.failed ? action.value : undefined
  return (
    <main class="auth">
      <section class="glass card" aria-labelledby="signin-title">
        <div class="auth-logo">
          <img src="/favicon.svg" alt="" width={40} height={40} />
          <div>
            <h1 id="signin-title">Sign in to SAM</h1>
            <p class="hint" style={{ margin: 0 }}>
              Agents on your machines, driven from chat.
            </p>
          </div>
        </div>
        {page.value.error && (
          <p class="form-error" role="alert">
            {page.value.error}
          </p>
        )}
        <Form action={action} class="stack">
          <div class="field">
            <label for="login">Login</label>
            <input
              class="input"
              id="login"
              name="login"
              autoComplete="username"
              value={failed?.login ?? "owner"}
              required
            />
          </div>
          <div class="field">
            <label for="password">Password</label>
            <input
              class="input"
              id="password"
              name="password"
              type="password"
              autoComplete="current-password"
              aria-invalid={failed ? "true" : undefined}
              aria-describedby={failed ? "signin-error" : undefined}
              required
            />
          </div>
          {failed && (
            <p class="form-error" id="signin-error" role="alert">
              {failed.message}
            </p>
          )}
          <button class="btn btn-primary" type="submit" disabled={action.isRunning}>
            {action.isRunning ? "Signing in…" : "Sign in"}
          </button>
        </Form>
        {page.value.github && (
          <>
            <div class="divider">or</div>
            <a class="btn" href="/api/v1/auth/github">
              Sign in with GitHub
            </a>
          </>
        )}
        <p class="hint" style={{ margin: 0 }}>
          The owner password is printed once by the first <code>./sam up</code> (or written to{" "}
          <code>.sam/owner-password</code> when its output is not a terminal); <code>./sam owner password</code> sets a
          new one.
        </p>
      </section>
    </main>
  )
})

export const head: DocumentHead = { title: "Sign in" }
