import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import type { SqlClient } from "@effect/sql"
import type { Nats } from "@sam/bus"
import { Api, makeId, Trace } from "@sam/bus"
import { Effect, Option } from "effect"
import { z } from "zod"
import { ApiError, issues } from "./ApiError.js"
import { Auth, type Principal } from "./Auth.js"
import type { BootLimits } from "./boot/BootLimiter.js"
import type { GatewayConfig } from "./Config.js"
import { Health, unavailable } from "./Health.js"
import type { LoginThrottle } from "./LoginThrottle.js"
import type { Revocation } from "./Revocation.js"
import * as SameOrigin from "./SameOrigin.js"

/** What a route handler may use; the gateway layer provides all of it. */
export type Services = SqlClient.SqlClient | Nats | Auth | GatewayConfig | Revocation | LoginThrottle | BootLimits

type Schema = z.ZodType

/** A route's description: an endpoint of the shared contract (`Api.Endpoint`, in bus/src/api). */
export type Spec<P extends Schema, Q extends Schema, B extends Schema, O extends Schema> = Api.Endpoint<P, Q, B, O>

export interface Input<P extends Schema, Q extends Schema, B extends Schema, A extends boolean> {
  readonly principal: A extends false ? Principal | null : Principal
  readonly params: z.output<P>
  readonly query: z.output<Q>
  readonly body: z.output<B>
  readonly request: HttpServerRequest.HttpServerRequest
}

/** A handler returns the response body, or a full response when it must set headers or cookies. */
export type Result<O extends Schema> = z.input<O> | { readonly response: HttpServerResponse.HttpServerResponse }

export interface Route {
  readonly spec: Spec<Schema, Schema, Schema, Schema>
  readonly handle: (input: Input<Schema, Schema, Schema, boolean>) => Effect.Effect<unknown, ApiError, Services>
}

const Empty = z.object({})

/** A typed route: its schemas parse the request and the response, and describe it in OpenAPI. */
export const make = <P extends Schema, Q extends Schema, B extends Schema, O extends Schema, A extends boolean>(
  spec: Api.Endpoint<P, Q, B, O, A>,
  handle: (input: Input<P, Q, B, A>) => Effect.Effect<Result<O>, ApiError, Services>
): Route => ({ spec, handle: handle as unknown as Route["handle"] })

const MAX_BODY_BYTES = 1_048_576

const parse = <S extends Schema>(schema: S | undefined, value: unknown, code: Api.ErrorCode, what: string) => {
  const result = (schema ?? Empty).safeParse(value)
  return result.success
    ? Effect.succeed(result.data as z.output<S>)
    : Effect.fail(new ApiError({ code, message: `${what} is not valid`, details: issues(result.error) }))
}

const readJson = (request: HttpServerRequest.HttpServerRequest) =>
  Effect.gen(function* () {
    const type = request.headers["content-type"] ?? ""
    if (!/^application\/json\b/i.test(type)) {
      return yield* new ApiError({
        code: "unsupported_media_type",
        message: "send the body as JSON with `Content-Type: application/json`"
      })
    }
    const length = Number(request.headers["content-length"] ?? 0)
    if (length > MAX_BODY_BYTES) {
      return yield* new ApiError({
        code: "payload_too_large",
        message: `bodies are limited to ${MAX_BODY_BYTES} bytes`
      })
    }
    const text = yield* request.text.pipe(
      HttpServerRequest.withMaxBodySize(Option.some(MAX_BODY_BYTES)),
      Effect.mapError(
        () => new ApiError({ code: "payload_too_large", message: `bodies are limited to ${MAX_BODY_BYTES} bytes` })
      )
    )
    return yield* Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: (e) =>
        new ApiError({ code: "invalid_json", message: `the body is not JSON: ${e instanceof Error ? e.message : e}` })
    })
  })

export const errorResponse = (error: ApiError) =>
  HttpServerResponse.unsafeJson(error.body, {
    status: error.status,
    ...(error.retryAfter === undefined ? {} : { headers: { "retry-after": String(error.retryAfter) } })
  })

const serve = (route: Route) =>
  Effect.gen(function* () {
    const { spec } = route
    const request = yield* HttpServerRequest.HttpServerRequest
    const auth = yield* Auth
    const principal = spec.auth === false ? null : yield* auth.authenticate(request)
    // Only a GET is safe to take from any page: a body-less POST is one a `<form>` elsewhere can send.
    if (principal !== null && spec.method !== "GET" && SameOrigin.byCookie(request)) {
      yield* SameOrigin.requireOwnOrigin(request)
    }
    const params = yield* parse(spec.params, yield* HttpRouter.params, "invalid_params", "a path parameter")
    const url = new URL(request.url, "http://gateway")
    const query = yield* parse(spec.query, Object.fromEntries(url.searchParams), "invalid_query", "the query string")
    const body =
      spec.body === undefined ? {} : yield* parse(spec.body, yield* readJson(request), "invalid_body", "the body")
    const result = yield* route.handle({ principal, params, query, body, request })
    if (typeof result === "object" && result !== null && "response" in result) {
      return (result as { response: HttpServerResponse.HttpServerResponse }).response
    }
    // Parsing the output strips every field the schema does not name: nothing leaks by accident.
    const out = spec.response.safeParse(result)
    if (!out.success)
      return yield* Effect.die(new Error(`${spec.method} ${spec.path}: bad response: ${out.error.message}`))
    return HttpServerResponse.unsafeJson(out.data, { status: spec.status ?? 200 })
  })

/**
 * While NATS or Postgres is down (`Health`), answer 503 at once with the reason, and end a request
 * in flight when one goes down, rather than let it hang until they are back.
 */
const failFast = (route: Route) =>
  Effect.flatMap(Effect.serviceOption(Health), (health) => {
    if (Option.isNone(health)) return serve(route)
    const down = health.value.down()
    if (Option.isSome(down)) return Effect.fail(unavailable(down.value))
    return Effect.raceFirst(
      serve(route),
      Effect.flatMap(health.value.whenDown, (dependency) => Effect.fail(unavailable(dependency, true)))
    )
  })

/**
 * Each request gets an id, answered in `X-Request-Id`: the correlation id of every message it causes,
 * through every actor hop, node command, agent report and feed frame (issue 12; `sam trace`). An id the
 * client sends is not taken: correlation ids are the gateway's, so nobody can file messages under
 * another's request.
 */
const withRequestId = <E, R>(handler: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
  Effect.suspend(() => {
    const requestId = makeId("req")
    return handler.pipe(
      Trace.withCorrelation(requestId),
      Effect.map((response) => HttpServerResponse.setHeader(response, "x-request-id", requestId)),
      Effect.annotateLogs("requestId", requestId)
    )
  })

/**
 * A request that died: one the database's going down explains says so (503, not `internal`); any other is logged
 * with its cause and answered `internal`.
 */
export const defectResponse = (what: string, defect: unknown) =>
  Effect.flatMap(
    Effect.flatMap(Effect.serviceOption(Health), (health) =>
      Option.isSome(health) ? health.value.recheck : Effect.succeed(Option.none())
    ),
    (down) =>
      Option.isSome(down)
        ? Effect.succeed(errorResponse(unavailable(down.value)))
        : Effect.logError(`${what} failed`, defect).pipe(
            Effect.as(
              errorResponse(new ApiError({ code: "internal", message: "the gateway failed to handle this request" }))
            )
          )
  )

const toHandler = (route: Route) =>
  failFast(route).pipe(
    Effect.catchTag("ApiError", (error) => Effect.succeed(errorResponse(error))),
    Effect.catchAllDefect((defect) => defectResponse(`${route.spec.method} ${route.spec.path}`, defect)),
    withRequestId,
    Effect.withSpan(`${route.spec.method} ${route.spec.path}`)
  )

const PREFIX = Api.PREFIX

/** All routes on one router under `/api/v1`, plus `GET /api/v1/openapi.json` describing them. */
export const router = (routes: ReadonlyArray<Route>, info: { readonly title: string; readonly version: string }) => {
  const document = openApi(routes, info)
  return HttpRouter.fromIterable([
    ...routes.map((route) =>
      HttpRouter.makeRoute(route.spec.method, `${PREFIX}${route.spec.path}` as HttpRouter.PathInput, toHandler(route))
    ),
    HttpRouter.makeRoute("GET", `${PREFIX}/openapi.json`, Effect.succeed(HttpServerResponse.unsafeJson(document)))
  ])
}

const jsonSchema = (schema: Schema, io: "input" | "output") =>
  z.toJSONSchema(schema, { io, unrepresentable: "any", target: "openapi-3.0" }) as Record<string, unknown>

const parameters = (schema: Schema | undefined, where: "path" | "query") => {
  if (schema === undefined) return []
  const described = jsonSchema(schema, "input") as { properties?: Record<string, unknown>; required?: string[] }
  return Object.entries(described.properties ?? {}).map(([name, property]) => ({
    name,
    in: where,
    required: where === "path" || (described.required ?? []).includes(name),
    schema: property
  }))
}

/** The OpenAPI 3 document, generated from the same zod schemas that parse the requests. */
export const openApi = (routes: ReadonlyArray<Route>, info: { readonly title: string; readonly version: string }) => {
  const paths: Record<string, Record<string, unknown>> = {}
  for (const { spec } of routes) {
    const path = `${PREFIX}${spec.path.replace(/:([A-Za-z]+)/g, "{$1}")}`
    const errors = {
      description: "an error",
      content: { "application/json": { schema: jsonSchema(Api.ApiErrorBody, "output") } }
    }
    paths[path] = {
      ...paths[path],
      [spec.method.toLowerCase()]: {
        summary: spec.summary,
        tags: [spec.tag],
        operationId: `${spec.method.toLowerCase()}${spec.path.replace(/[^A-Za-z]+(.)/g, (_, c: string) => c.toUpperCase())}`,
        parameters: [...parameters(spec.params, "path"), ...parameters(spec.query, "query")],
        ...(spec.body === undefined
          ? {}
          : {
              requestBody: {
                required: true,
                content: { "application/json": { schema: jsonSchema(spec.body, "input") } }
              }
            }),
        responses: {
          [String(spec.status ?? 200)]: {
            description: "success",
            content: { "application/json": { schema: jsonSchema(spec.response, "output") } }
          },
          default: errors
        },
        ...(spec.auth === false ? { security: [] } : {})
      }
    }
  }
  return {
    openapi: "3.0.3",
    info,
    servers: [{ url: "/" }],
    components: {
      securitySchemes: {
        bearer: { type: "http", scheme: "bearer", description: "an API token (sam_pat_…) or a session token" },
        cookie: { type: "apiKey", in: "cookie", name: "sam_session" }
      }
    },
    security: [{ bearer: [] }, { cookie: [] }],
    paths
  }
}
