import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Api } from "@sam/bus"
import { Effect, Option } from "effect"
import { z } from "zod"
import { ApiError } from "../ApiError.js"
import { GatewayConfig } from "../Config.js"
import * as GitHubApp from "../GitHubApp.js"
import * as Installations from "../GitHubInstallations.js"
import * as Route from "../Route.js"

const E = Api.GitHubAppEndpoints
/** GitHub caps webhook payloads at 25 MB; SAM acts only on small installation events. */
const MAX_WEBHOOK_BYTES = 5 * 1024 * 1024

const configured = Effect.gen(function* () {
  const config = yield* GatewayConfig
  if (config.githubApp === undefined) {
    return yield* new ApiError({
      code: "not_found",
      message:
        "no GitHub App is configured (set SAM_GITHUB_APP_ID, SAM_GITHUB_APP_PRIVATE_KEY, SAM_GITHUB_WEBHOOK_SECRET)"
    })
  }
  return config.githubApp
})

const InstallationEvent = z.object({
  action: z.string(),
  installation: Installations.Installation,
  sender: z.object({ id: z.number().int().positive(), login: z.string() })
})

/** What SAM does with one verified, first-seen delivery; true when it acted. */
const act = (event: string, payload: unknown) =>
  Effect.gen(function* () {
    if (event !== "installation") return false
    const parsed = InstallationEvent.safeParse(payload)
    if (!parsed.success) {
      return yield* new ApiError({
        code: "invalid_body",
        message: "the installation event is not one SAM understands",
        details: parsed.error.issues.map((issue) => ({ path: issue.path.join("."), message: issue.message }))
      })
    }
    const { action, installation, sender } = parsed.data
    if (action === "created") {
      // GitHub never reuses an installation id (a reinstall is a new one), and the delivery id is not covered by the
      // signature: a "created" for an installation SAM saw deleted is a replayed body, and revives nothing.
      const sql = yield* SqlClient.SqlClient
      const tombstoned = yield* sql`
        SELECT 1 FROM github_installation_accounts
        WHERE installation_id = ${installation.id} AND uninstalled_at IS NOT NULL`.pipe(Effect.orDie)
      if (tombstoned.length > 0) {
        yield* Effect.logWarning(
          `GitHub webhook: a "created" delivery for installation ${installation.id}, which was deleted, was ignored`
        )
        return false
      }
      return yield* Installations.created(installation, sender)
    }
    if (action === "deleted") {
      yield* Installations.uninstalled(installation.id)
      return true
    }
    return false
  })

export const routes = [
  Route.make(E.githubWebhook, ({ request }) =>
    Effect.gen(function* () {
      const app = yield* configured
      const raw = yield* request.arrayBuffer.pipe(
        HttpServerRequest.withMaxBodySize(Option.some(MAX_WEBHOOK_BYTES)),
        Effect.mapError(() => new ApiError({ code: "payload_too_large", message: "the delivery is too large" }))
      )
      const body = Buffer.from(raw)
      if (!GitHubApp.verifySignature(app.webhookSecret, body, request.headers["x-hub-signature-256"])) {
        return yield* new ApiError({ code: "unauthenticated", message: "X-Hub-Signature-256 does not verify" })
      }
      const delivery = request.headers["x-github-delivery"] ?? ""
      const event = request.headers["x-github-event"] ?? ""
      // GitHub's delivery ids are GUIDs and its event names snake_case words.
      if (!/^[A-Za-z0-9-]{1,200}$/.test(delivery) || !/^[a-z_]{1,100}$/.test(event)) {
        return yield* new ApiError({
          code: "invalid_body",
          message: "X-GitHub-Delivery and X-GitHub-Event are required"
        })
      }
      const payload = yield* Effect.try({
        try: () => JSON.parse(body.toString("utf8")) as unknown,
        catch: () => new ApiError({ code: "invalid_json", message: "the delivery is not JSON" })
      })
      const sql = yield* SqlClient.SqlClient
      // The delivery id and what it did commit together: a redelivery after a crash acts once.
      return yield* sql
        .withTransaction(
          Effect.gen(function* () {
            const fresh = yield* sql`
            INSERT INTO github_webhook_deliveries (delivery_id, event) VALUES (${delivery}, ${event})
            ON CONFLICT (delivery_id) DO NOTHING RETURNING delivery_id`.pipe(Effect.orDie)
            if (fresh.length === 0) return { fresh: false, handled: false }
            return { fresh: true, handled: yield* act(event, payload) }
          })
        )
        .pipe(Effect.catchTag("SqlError", Effect.die))
    })
  ),
  Route.make(E.installApp, () =>
    Effect.gen(function* () {
      const app = yield* configured
      if (app.slug === undefined) {
        return yield* new ApiError({
          code: "not_found",
          message: "the GitHub App's install link is not configured (set SAM_GITHUB_APP_SLUG)"
        })
      }
      const url = new URL(`/apps/${encodeURIComponent(app.slug)}/installations/new`, app.webUrl)
      return { response: HttpServerResponse.redirect(url.toString(), { status: 302 }) }
    })
  ),
  Route.make(E.installSetup, ({ principal }) =>
    Effect.gen(function* () {
      const app = yield* configured
      // What was installed is read from GitHub as this user (the query can be forged by anyone).
      yield* Installations.sync(app.apiUrl, principal.userId)
      return { response: HttpServerResponse.redirect("/settings", { status: 302 }) }
    })
  ),
  Route.make(E.listInstallations, ({ principal }) =>
    Effect.gen(function* () {
      const app = yield* configured
      const sync = yield* Installations.sync(app.apiUrl, principal.userId)
      return { installations: yield* Installations.list(principal.userId), sync }
    })
  ),
  Route.make(E.unlinkInstallation, ({ principal, params }) =>
    Effect.gen(function* () {
      yield* configured
      return { unlinked: yield* Installations.unlink(principal.userId, params.installationId) }
    })
  ),
  Route.make(E.listRepositories, ({ principal, params }) =>
    Effect.gen(function* () {
      const app = yield* configured
      return { repositories: yield* Installations.repositories(app.apiUrl, principal.userId, params.installationId) }
    })
  )
]
