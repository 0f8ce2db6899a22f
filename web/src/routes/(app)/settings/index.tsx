import { component$ } from "@builder.io/qwik"
import { type DocumentHead, Form, routeAction$, routeLoader$ } from "@builder.io/qwik-city"
import * as Api from "@sam/bus/api"
import { Client } from "@sam/gateway/client"
import { Either } from "effect"
import { Link } from "~/components/Link"
import { clientOf, config, load, run } from "~/lib/server"
import { relativeTime } from "~/lib/sessions"

export const useTokens = routeLoader$((event) => load(event, clientOf(event).call(Api.AuthEndpoints.listTokens)))

export const useCreateToken = routeAction$(async (form, event) => {
  const name = String(form.name ?? "").trim()
  const days = String(form.expiresInDays ?? "").trim()
  const r = await run(
    clientOf(event).call(Api.AuthEndpoints.createToken, {
      body: { name, ...(days === "" ? {} : { expiresInDays: Number(days) }) }
    })
  )
  if (Either.isLeft(r)) return event.fail(r.left.status || 502, { message: r.left.message })
  return { token: r.right.token, name: r.right.name }
})

/** A Hetzner token is sent once, checked with Hetzner by the gateway, and never comes back (ADR 0026). */
export const useCloud = routeLoader$((event) =>
  load(event, clientOf(event).call(Api.CloudEndpoints.listCloudCredentials))
)

export const useSetHetzner = routeAction$(async (form, event) => {
  const r = await run(
    clientOf(event).call(Api.CloudEndpoints.setHetznerToken, { body: { token: String(form.token ?? "") } })
  )
  return Either.isLeft(r) ? event.fail(r.left.status || 502, { message: r.left.message }) : { saved: true }
})

export const useRemoveHetzner = routeAction$(async (_form, event) => {
  const r = await run(clientOf(event).call(Api.CloudEndpoints.deleteHetznerToken))
  return Either.isLeft(r) ? event.fail(r.left.status || 502, { message: r.left.message }) : { removed: true }
})

export const useRevokeToken = routeAction$(async (form, event) => {
  const r = await run(
    clientOf(event).call(Api.AuthEndpoints.revokeToken, { params: { tokenId: String(form.tokenId) } })
  )
  return Either.isLeft(r) ? event.fail(r.left.status || 502, { message: r.left.message }) : { revoked: r.right.id }
})

/**
 * NATS credentials are bound to an API token (ADR 0011), not to a browser session: this makes a
 * token for them and mints them with it; revoking that token revokes them.
 */
export const useMintCreds = routeAction$(async (form, event) => {
  const hours = Number(form.expiresInHours ?? 12)
  const created = await run(
    clientOf(event).call(Api.AuthEndpoints.createToken, {
      body: { name: `nats ${new Date().toISOString().slice(0, 16)}` }
    })
  )
  if (Either.isLeft(created)) return event.fail(created.left.status || 502, { message: created.left.message })
  const client = Client.make({ baseUrl: config.apiUrl || event.url.origin, token: created.right.token })
  const creds = await run(
    client.call(Api.CredentialsEndpoints.mintNatsCredentials, { body: { expiresInHours: hours } })
  )
  if (Either.isLeft(creds)) return event.fail(creds.left.status || 502, { message: creds.left.message })
  return { ...creds.right, tokenName: created.right.name }
})

export default component$(() => {
  const tokens = useTokens()
  const create = useCreateToken()
  const revoke = useRevokeToken()
  const mint = useMintCreds()
  const cloud = useCloud()
  const setHetzner = useSetHetzner()
  const removeHetzner = useRemoveHetzner()
  const hetzner = cloud.value.credentials.find((c) => c.provider === "hetzner")
  const created = create.value && !create.value.failed ? create.value : undefined
  const creds = mint.value && !mint.value.failed ? mint.value : undefined
  return (
    <main class="page">
      <div class="page-narrow">
        <h1>Settings</h1>
        <section class="glass card row" aria-label="Agent credentials">
          <span style={{ flex: 1 }}>Your keys and tokens for Claude Code, Codex, Gemini CLI and OpenCode.</span>
          <Link class="btn" href="/settings/agents">
            Agent credentials
          </Link>
        </section>
        <section class="glass card stack" aria-labelledby="tokens">
          <h2 id="tokens">API tokens</h2>
          <p class="hint" style={{ margin: 0 }}>
            For the <code>sam</code> CLI and programs: send as <code>Authorization: Bearer …</code>.
          </p>
          <Form action={create} class="row" style={{ alignItems: "end" }}>
            <div class="field" style={{ flex: 1, minWidth: "200px" }}>
              <label for="t-name">Name</label>
              <input class="input" id="t-name" name="name" placeholder="laptop CLI" required />
            </div>
            <div class="field" style={{ width: "140px" }}>
              <label for="t-days">Expires in days</label>
              <input
                class="input"
                id="t-days"
                name="expiresInDays"
                type="number"
                min={1}
                max={3650}
                placeholder="never"
              />
            </div>
            <button class="btn btn-primary" type="submit">
              Create token
            </button>
          </Form>
          {create.value?.failed && <p class="form-error">{create.value.message}</p>}
          {created && (
            <div class="stack" role="status" data-testid="new-token">
              <strong>Copy “{created.name}” now: it is shown only this once.</strong>
              <div class="secret">{created.token}</div>
            </div>
          )}
          {revoke.value?.failed && <p class="form-error">{revoke.value.message}</p>}
          <table class="table" data-testid="token-list">
            <thead>
              <tr>
                <th>Name</th>
                <th>Created</th>
                <th class="hide-phone">Last used</th>
                <th>Expires</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {tokens.value.tokens.map((t) => (
                <tr key={t.id}>
                  <td>{t.name}</td>
                  <td>{relativeTime(t.createdAt)}</td>
                  <td class="hide-phone">{t.lastUsedAt ? relativeTime(t.lastUsedAt) : "never"}</td>
                  <td>
                    {t.revokedAt ? "revoked" : t.expiresAt ? new Date(t.expiresAt).toLocaleDateString() : "never"}
                  </td>
                  <td>
                    {t.revokedAt === null && (
                      <Form action={revoke}>
                        <input type="hidden" name="tokenId" value={t.id} />
                        <button class="btn btn-sm btn-danger" type="submit" aria-label={`Revoke ${t.name}`}>
                          Revoke
                        </button>
                      </Form>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
        <section class="glass card stack" aria-labelledby="cloud">
          <h2 id="cloud">Hetzner Cloud</h2>
          <p class="hint" style={{ margin: 0 }}>
            Run agents on servers in your own Hetzner Cloud project: paste a <em>Read &amp; Write</em> API token
            (Hetzner Console → your project → Security → API tokens). It is checked with Hetzner, stored encrypted and
            never shown again. Agent profiles with the node <code>hetzner</code> then run on servers there.
          </p>
          <p data-testid="hetzner-status" style={{ margin: 0 }}>
            {hetzner?.configured
              ? `Token set · checked with Hetzner ${relativeTime(hetzner.validatedAt ?? "")}`
              : "No token set"}
          </p>
          <Form action={setHetzner} class="row" style={{ alignItems: "end" }}>
            <div class="field" style={{ flex: 1, minWidth: "240px" }}>
              <label for="h-token">{hetzner?.configured ? "Replace the token" : "API token"}</label>
              <input
                class="input"
                id="h-token"
                name="token"
                type="password"
                autocomplete="off"
                spellcheck={false}
                minLength={32}
                maxLength={200}
                required
              />
            </div>
            <button class="btn btn-primary" type="submit">
              Save token
            </button>
          </Form>
          {setHetzner.value?.failed && <p class="form-error">{setHetzner.value.message}</p>}
          {hetzner?.configured && (
            <Form action={removeHetzner}>
              <button class="btn btn-sm btn-danger" type="submit">
                Remove token
              </button>
            </Form>
          )}
          {removeHetzner.value?.failed && <p class="form-error">{removeHetzner.value.message}</p>}
        </section>
        <section class="glass card stack" aria-labelledby="nats">
          <h2 id="nats">NATS credentials</h2>
          <p class="hint" style={{ margin: 0 }}>
            For programmatic clients on the bus (request/reply on <code>sam.in.&lt;you&gt;.…</code>). Minting makes an
            API token for them; revoking that token revokes them at once.
          </p>
          <Form action={mint} class="row" style={{ alignItems: "end" }}>
            <div class="field" style={{ width: "160px" }}>
              <label for="n-hours">Valid for hours</label>
              <input class="input" id="n-hours" name="expiresInHours" type="number" min={1} max={24} value={12} />
            </div>
            <button class="btn" type="submit">
              Mint credentials
            </button>
          </Form>
          {mint.value?.failed && <p class="form-error">{mint.value.message}</p>}
          {creds && (
            <div class="stack" role="status">
              <strong>Save this as a .creds file now: it is shown only once (token “{creds.tokenName}”).</strong>
              <span class="hint">
                Subjects: <code>{creds.subjectPrefix}.&lt;command&gt;</code> · inbox prefix{" "}
                <code>{creds.inboxPrefix}</code> · expires {new Date(creds.expiresAt).toLocaleString()}
                {creds.natsUrl ? ` · ${creds.natsUrl}` : ""}
              </span>
              <div class="secret">{creds.creds}</div>
            </div>
          )}
        </section>
      </div>
    </main>
  )
})

export const head: DocumentHead = { title: "Settings" }
