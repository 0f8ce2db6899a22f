import { HttpClient, HttpClientRequest } from "@effect/platform"
import { Clock, Context, Duration, Effect, Layer, type Redacted } from "effect"
import type { z } from "zod"
import {
  type HetznerApiError as ApiError,
  classify,
  HetznerApiError,
  HetznerDecodeError,
  type HetznerError,
  HetznerTransportError,
  type RateLimit
} from "./HetznerError.js"
import * as S from "./HetznerSchemas.js"

export const DEFAULT_BASE_URL = "https://api.hetzner.cloud/v1"

/** The calls SAM makes, for one API token (one Hetzner project). */
export interface HetznerApi {
  readonly createServer: (
    request: S.CreateServerRequest
  ) => Effect.Effect<z.output<typeof S.CreateServerResponse>, HetznerError>
  /** `null` when there is no such server (404) */
  readonly getServer: (id: number) => Effect.Effect<S.Server | null, HetznerError>
  /** every page of `GET /servers?label_selector=…` */
  readonly listServers: (labelSelector: string) => Effect.Effect<ReadonlyArray<S.Server>, HetznerError>
  /** `null` when the server is gone already (404 counts as deleted) */
  readonly deleteServer: (id: number) => Effect.Effect<S.Action | null, HetznerError>
  readonly serverTypes: () => Effect.Effect<ReadonlyArray<S.ServerType>, HetznerError>
  readonly locations: () => Effect.Effect<ReadonlyArray<S.Location>, HetznerError>
  readonly images: (query: {
    readonly type?: string
    readonly name?: string
  }) => Effect.Effect<ReadonlyArray<S.Image>, HetznerError>
  readonly getAction: (id: number) => Effect.Effect<S.Action, HetznerError>
}

export interface HetznerClientOptions {
  /** default `SAM_HETZNER_API_URL`, else https://api.hetzner.cloud/v1 */
  readonly baseUrl?: string
  /** per request (default 30 s) */
  readonly timeout?: Duration.DurationInput
  /** how often a 429 is waited out before it is the caller's (default 5) */
  readonly rateLimitRetries?: number
}

export class HetznerClient extends Context.Tag("sam/HetznerClient")<
  HetznerClient,
  { readonly baseUrl: string; readonly forToken: (token: Redacted.Redacted<string>) => HetznerApi }
>() {}

const MAX_PAGES = 100
const PER_PAGE = 50

const parseRateLimit = (headers: Readonly<Record<string, string | undefined>>): RateLimit | undefined => {
  const limit = Number(headers["ratelimit-limit"])
  const remaining = Number(headers["ratelimit-remaining"])
  const reset = Number(headers["ratelimit-reset"])
  return [limit, remaining, reset].every((n) => Number.isFinite(n) && headers["ratelimit-limit"] !== undefined)
    ? { limit, remaining, reset }
    : undefined
}

/**
 * How long a 429 waits (ADR 0026): Hetzner refills the budget evenly until `RateLimit-Reset` (UNIX
 * seconds, when it is full), so one more request is allowed after `(reset - now) / (limit - remaining)`;
 * at least 1 s, at most 60 s; 1 s without the headers.
 */
export const rateLimitWaitMs = (rate: RateLimit | undefined, nowMs: number) => {
  if (rate === undefined) return 1_000
  const perRequest = (rate.reset * 1000 - nowMs) / Math.max(1, rate.limit - rate.remaining)
  return Math.min(60_000, Math.max(1_000, Math.ceil(perRequest / 1000) * 1000))
}

export const make = (http: HttpClient.HttpClient, options: HetznerClientOptions = {}) => {
  const baseUrl = (options.baseUrl ?? process.env.SAM_HETZNER_API_URL ?? DEFAULT_BASE_URL).replace(/\/+$/, "")
  const timeout = options.timeout ?? "30 seconds"
  const retries = options.rateLimitRetries ?? 5

  const forToken = (token: Redacted.Redacted<string>): HetznerApi => {
    const once = <A>(
      method: "GET" | "POST" | "DELETE",
      path: string,
      schema: z.ZodType<A> | null,
      init: { readonly query?: Record<string, string>; readonly body?: unknown } = {}
    ): Effect.Effect<A, HetznerError> =>
      Effect.gen(function* () {
        let request = HttpClientRequest.make(method)(`${baseUrl}${path}`).pipe(
          HttpClientRequest.bearerToken(token),
          HttpClientRequest.acceptJson,
          HttpClientRequest.setUrlParams(init.query ?? {})
        )
        if (init.body !== undefined) request = HttpClientRequest.bodyUnsafeJson(request, init.body)
        const what = `${method} ${path}`
        const response = yield* http.execute(request).pipe(
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () => new HetznerTransportError({ message: `${what}: no answer in ${Duration.format(timeout)}` })
          }),
          Effect.catchTag("RequestError", "ResponseError", (e) =>
            Effect.fail(new HetznerTransportError({ message: `${what}: ${e.message}`, cause: e }))
          )
        )
        const text = yield* response.text.pipe(
          Effect.mapError((e) => new HetznerTransportError({ message: `${what}: ${e.message}`, cause: e }))
        )
        let json: unknown
        try {
          json = text === "" ? {} : JSON.parse(text)
        } catch {
          json = undefined
        }
        const status = response.status
        if (status >= 200 && status < 300) {
          if (schema === null) return undefined as A
          const parsed = schema.safeParse(json)
          if (!parsed.success)
            return yield* new HetznerDecodeError({
              status,
              message: `${what}: unexpected answer: ${parsed.error.message}`
            })
          return parsed.data
        }
        const body = S.ErrorBody.safeParse(json)
        const code = body.success ? body.data.error.code : status === 429 ? "rate_limit_exceeded" : `http_${status}`
        const message = body.success ? body.data.error.message : `HTTP ${status}`
        const rateLimit = parseRateLimit(response.headers)
        return yield* new HetznerApiError({
          status,
          code,
          message,
          ...(body.success && body.data.error.details !== undefined ? { details: body.data.error.details } : {}),
          category: classify(status, code, message),
          ...(rateLimit === undefined ? {} : { rateLimit })
        })
      })

    /** A 429 is waited out as its headers say (the request was refused, so repeating it is safe). */
    const call = <A>(...args: Parameters<typeof once<A>>): Effect.Effect<A, HetznerError> => {
      const attempt = (n: number): Effect.Effect<A, HetznerError> =>
        once<A>(...args).pipe(
          Effect.catchIf(
            (e): e is ApiError => e._tag === "HetznerApiError" && e.category === "rate_limited" && n < retries,
            (e) =>
              Effect.gen(function* () {
                const wait = rateLimitWaitMs(e.rateLimit, yield* Clock.currentTimeMillis)
                yield* Effect.logWarning(`hetzner: rate limited on ${args[0]} ${args[1]}; waiting ${wait} ms`)
                yield* Effect.sleep(wait)
                return yield* attempt(n + 1)
              })
          )
        )
      return attempt(0)
    }

    const pages = <A, K extends string>(
      path: string,
      schema: z.ZodType<{ [k in K]: ReadonlyArray<A> } & { meta?: z.output<typeof S.Meta> | undefined }>,
      key: K,
      query: Record<string, string>
    ) =>
      Effect.gen(function* () {
        const out: A[] = []
        const seen = new Set<number>()
        let page: number | null = 1
        while (page !== null) {
          if (seen.has(page) || seen.size >= MAX_PAGES)
            return yield* new HetznerDecodeError({
              status: 200,
              message: `GET ${path}: pagination loops at page ${page}`
            })
          seen.add(page)
          const body: { [k in K]: ReadonlyArray<A> } & { meta?: z.output<typeof S.Meta> | undefined } = yield* call(
            "GET",
            path,
            schema,
            { query: { ...query, page: String(page), per_page: String(PER_PAGE) } }
          )
          out.push(...body[key])
          page = body.meta?.pagination.next_page ?? null
        }
        return out as ReadonlyArray<A>
      })

    const notFoundIsNull = <A>(effect: Effect.Effect<A, HetznerError>) =>
      effect.pipe(
        Effect.catchIf(
          (e) => e._tag === "HetznerApiError" && e.category === "not_found",
          () => Effect.succeed(null)
        )
      )

    return {
      createServer: (request) => call("POST", "/servers", S.CreateServerResponse, { body: request }),
      getServer: (id) =>
        notFoundIsNull(call("GET", `/servers/${id}`, S.ServerResponse).pipe(Effect.map((r) => r.server))),
      listServers: (labelSelector) => pages("/servers", S.ServersPage, "servers", { label_selector: labelSelector }),
      deleteServer: (id) =>
        notFoundIsNull(call("DELETE", `/servers/${id}`, S.ActionResponse).pipe(Effect.map((r) => r.action))),
      serverTypes: () => pages("/server_types", S.ServerTypesPage, "server_types", {}),
      locations: () => call("GET", "/locations", S.LocationsPage).pipe(Effect.map((r) => r.locations)),
      images: (query) =>
        pages("/images", S.ImagesPage, "images", {
          ...(query.type === undefined ? {} : { type: query.type }),
          ...(query.name === undefined ? {} : { name: query.name })
        }),
      getAction: (id) => call("GET", `/actions/${id}`, S.ActionResponse).pipe(Effect.map((r) => r.action))
    }
  }
  return { baseUrl, forToken }
}

/** The client over the `HttpClient` in context (FetchHttpClient in production; the fake's in unit tests). */
export const layer = (options: HetznerClientOptions = {}) =>
  Layer.effect(
    HetznerClient,
    Effect.map(HttpClient.HttpClient, (http) => make(http, options))
  )
