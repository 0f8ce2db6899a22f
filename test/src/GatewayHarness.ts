import { SqlClient } from "@effect/sql"
import { makeId, type UserId } from "@sam/bus"
import { Auth, Gateway } from "@sam/gateway"
import { Context, Effect, Layer } from "effect"
import { makeControlPlaneEnv } from "./ControlPlaneHarness.js"
import { waitUntil } from "./Env.js"
import { startPrivateNats } from "./PrivateNats.js"

/** Where the gateway under test listens. */
export class GatewayUrl extends Context.Tag("test/GatewayUrl")<GatewayUrl, string>() {}

/**
 * The control plane (host runtime, real vm-agents) and the gateway on a free port, on a private
 * nats-server and a fresh database. Tests get `GatewayUrl`, `Nats` and `SqlClient`.
 */
export const makeGatewayEnv = (
  options: Partial<Gateway.GatewayOptions> = {},
  /** the control plane's options (node JWT lifetime; Hetzner nodes with a fake's URL and a boot) */
  controlPlane: Omit<Parameters<typeof makeControlPlaneEnv>[0], "runtime" | "nats"> = {}
) =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      const nats = yield* startPrivateNats
      const env = makeControlPlaneEnv({ runtime: "host", nats, ...controlPlane })
      const gateway = Layer.scoped(
        GatewayUrl,
        Gateway.start({
          host: "127.0.0.1",
          port: 0,
          natsUrl: nats.url,
          ...(nats.websocket === undefined ? {} : { natsWebSocket: nats.websocket }),
          ...options
        }).pipe(Effect.map((g) => g.url))
      )
      return Layer.provideMerge(gateway, env)
    })
  )

export const GatewayEnv = makeGatewayEnv()

export interface TestUser {
  readonly userId: UserId
  /** an API token of this user */
  readonly token: string
  readonly tokenId: string
}

/** A user with an API token, made directly in the ledger. */
export const makeUser = (name = "Test User") =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const userId = makeId("user")
    yield* sql`INSERT INTO users (id, display_name) VALUES (${userId}, ${name})`
    const created = yield* Effect.flatMap(Auth, (auth) => auth.createToken(userId, { name: "test" })).pipe(
      Effect.provide(Auth.Default)
    )
    return { userId, token: created.token, tokenId: created.id } satisfies TestUser
  })

export interface HttpResult {
  readonly status: number
  // biome-ignore lint/suspicious/noExplicitAny: a response body is arbitrary JSON; tests assert it field by field
  readonly body: any
  readonly headers: Headers
}

/** One HTTP request to the gateway with an optional bearer token; the body is parsed when it is JSON. */
export const http = (
  method: string,
  path: string,
  options: {
    readonly token?: string
    readonly body?: unknown
    readonly raw?: string
    readonly headers?: Record<string, string>
  } = {}
) =>
  Effect.gen(function* () {
    const base = yield* GatewayUrl
    return yield* Effect.promise(async (): Promise<HttpResult> => {
      const headers: Record<string, string> = { ...options.headers }
      if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
      let body: string | undefined
      if (options.raw !== undefined) body = options.raw
      else if (options.body !== undefined) {
        body = JSON.stringify(options.body)
        headers["content-type"] ??= "application/json"
      }
      // A failure says which request it was (fetch's own error names neither).
      const response = await fetch(`${base}${path}`, {
        method,
        headers,
        redirect: "manual",
        ...(body === undefined ? {} : { body })
      }).catch((cause: unknown) => {
        const reason =
          cause instanceof Error ? `${cause.message} (${String((cause as { cause?: unknown }).cause)})` : cause
        throw new Error(`${method} ${path}: ${reason}`, { cause })
      })
      const text = await response.text()
      let parsed: unknown = text
      try {
        parsed = text === "" ? undefined : JSON.parse(text)
      } catch {}
      return { status: response.status, body: parsed, headers: response.headers }
    })
  })

/** The value of a cookie a response sets (`Set-Cookie`), if it sets it. */
export const cookieOf = (headers: Headers, name: string) =>
  headers
    .getSetCookie()
    .map((c) => c.split(";")[0] ?? "")
    .find((c) => c.startsWith(`${name}=`))
    ?.slice(name.length + 1)

/** Wait for a conversation task's first turn to end (`awaiting_followup`); its session's id. */
export const awaitingFollowUp = (taskId: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* waitUntil(
      "the task awaits a follow-up",
      sql<{ sessionId: string | null; executionStep: string | null }>`
        SELECT session_id, execution_step FROM tasks WHERE id = ${taskId}`.pipe(
        Effect.map((rows) =>
          rows[0]?.executionStep === "awaiting_followup" ? (rows[0].sessionId ?? undefined) : undefined
        )
      ),
      { timeout: "60 seconds" }
    )
  })
