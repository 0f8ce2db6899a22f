// Browser-safe: `fetch`, `URL`, zod and the API contract (`@sam/bus/api`, which has no NATS in it).
import * as Api from "@sam/bus/api"
import { Data, Effect } from "effect"
import type { z } from "zod"

type Schema = z.ZodType

const PREFIX = Api.PREFIX
const ErrorBody = Api.ApiErrorBody

/**
 * A call that did not succeed. From the gateway: its HTTP `status` and error body (`code`, `message`,
 * `details`, as in `Api.ApiErrorBody`). Made here, with `status` 0: `unreachable` (no HTTP answer),
 * `invalid_params` (a path parameter is missing). `bad_response` is an answer the endpoint's response
 * schema refuses (a client and a gateway of different versions).
 */
export class ApiClientError extends Data.TaggedError("ApiClientError")<{
  readonly status: number
  readonly code: string
  readonly message: string
  readonly details?: unknown
}> {}

type Empty = Record<never, never>

/** A part of the request is optional when its schema accepts an empty object. */
type Part<K extends string, S extends Schema> =
  Empty extends z.input<S> ? { readonly [k in K]?: z.input<S> } : { readonly [k in K]: z.input<S> }

/** What a call sends: `params` fill the path, `query` the search string, `body` is sent as JSON. */
export type Input<P extends Schema, Q extends Schema, B extends Schema> = Part<"params", P> &
  Part<"query", Q> &
  Part<"body", B>

/** The second argument of `call`: optional when the endpoint needs no parameters and no body. */
export type Args<P extends Schema, Q extends Schema, B extends Schema> =
  Empty extends Input<P, Q, B> ? [input?: Input<P, Q, B>] : [input: Input<P, Q, B>]

/** One HTTP request as the client sends it, and the answer's status and body. */
export interface TransportRequest {
  readonly url: string
  readonly method: string
  readonly headers: Readonly<Record<string, string>>
  readonly body?: string | undefined
  readonly signal: AbortSignal
}
export type Transport = (request: TransportRequest) => Promise<{ readonly status: number; readonly text: string }>

/** `fetch`: in a browser, and wherever no other transport is given. */
export const fetchTransport: Transport = async ({ url, method, headers, body, signal }) => {
  const response = await fetch(url, { method, headers, signal, ...(body === undefined ? {} : { body }) })
  return { status: response.status, text: await response.text() }
}

export interface ClientOptions {
  /** where the gateway is: `http://127.0.0.1:8080`; "" for the page's own origin in a browser */
  readonly baseUrl: string
  /** an API token (`sam_pat_…`) or session token; without one, a browser sends its session cookie */
  readonly token?: string | undefined
  /** sent with every request (the web app's server side says whose browser it calls for, gateway/src/ClientAddress.ts) */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** what carries the requests: `fetch` unless given (the CLI gives one over `node:http`, infra/src/HttpTransport.ts) */
  readonly transport?: Transport | undefined
}

export interface Client {
  readonly baseUrl: string
  /** Call one endpoint of the API; the answer is parsed with the endpoint's response schema. */
  readonly call: <P extends Schema, Q extends Schema, B extends Schema, O extends Schema, A extends boolean>(
    endpoint: Api.Endpoint<P, Q, B, O, A>,
    ...input: Args<P, Q, B>
  ) => Effect.Effect<z.output<O>, ApiClientError>
}

const pathOf = (template: string, params: Record<string, unknown>) => {
  const missing: Array<string> = []
  const path = template.replace(/:([A-Za-z]+)/g, (_, name: string) => {
    const value = params[name]
    if (value === undefined || value === null || value === "") missing.push(name)
    return encodeURIComponent(String(value))
  })
  return missing.length === 0
    ? Effect.succeed(path)
    : Effect.fail(
        new ApiClientError({
          status: 0,
          code: "invalid_params",
          message: `missing path parameter ${missing.join(", ")}`
        })
      )
}

const searchOf = (query: Record<string, unknown>) => {
  const search = new URLSearchParams()
  for (const [name, value] of Object.entries(query)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== undefined && item !== null) search.append(name, String(item))
    }
  }
  const text = search.toString()
  return text === "" ? "" : `?${text}`
}

const parseJson = (text: string): unknown => {
  try {
    return text === "" ? undefined : JSON.parse(text)
  } catch {
    return undefined
  }
}

const issues = (error: z.ZodError) =>
  error.issues.map((issue) => ({ path: issue.path.map(String).join("."), message: issue.message }))

/** A typed client of the HTTP API, built on the same endpoint descriptions the gateway serves. */
export const make = (options: ClientOptions): Client => {
  const baseUrl = options.baseUrl.replace(/\/+$/, "")
  const transport = options.transport ?? fetchTransport
  const call: Client["call"] = (endpoint, ...args) =>
    Effect.gen(function* () {
      const input = (args[0] ?? {}) as { params?: object; query?: object; body?: unknown }
      const path = yield* pathOf(endpoint.path, (input.params ?? {}) as Record<string, unknown>)
      const url = `${baseUrl}${PREFIX}${path}${searchOf((input.query ?? {}) as Record<string, unknown>)}`
      const headers: Record<string, string> = { ...options.headers, accept: "application/json" }
      if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
      let body: string | undefined
      if (endpoint.body !== undefined) {
        headers["content-type"] = "application/json"
        body = JSON.stringify(input.body ?? {})
      }
      const what = `${endpoint.method} ${PREFIX}${endpoint.path}`
      const { status, text } = yield* Effect.tryPromise({
        try: (signal) => transport({ url, method: endpoint.method, headers, body, signal }),
        catch: (cause) =>
          new ApiClientError({
            status: 0,
            code: "unreachable",
            message: `cannot reach the gateway at ${baseUrl || "this origin"} (${what}): ${
              cause instanceof Error ? ((cause.cause as Error | undefined)?.message ?? cause.message) : String(cause)
            }`
          })
      })
      const json = parseJson(text)
      if (status < 200 || status > 299) {
        const error = ErrorBody.safeParse(json)
        return yield* error.success
          ? new ApiClientError({ status, ...error.data })
          : new ApiClientError({
              status,
              code: `http_${status}`,
              message: `${what} answered ${status}: ${text.slice(0, 200)}`
            })
      }
      const out = endpoint.response.safeParse(json)
      if (!out.success) {
        return yield* new ApiClientError({
          status,
          code: "bad_response",
          message: `${what} answered with a body this client does not understand`,
          details: issues(out.error)
        })
      }
      return out.data
    })
  return { baseUrl, call }
}
