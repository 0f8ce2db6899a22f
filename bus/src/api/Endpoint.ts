import { z } from "zod"

type Schema = z.ZodType

/**
 * One HTTP endpoint of the gateway, described with the zod schemas that parse its input and output.
 * The gateway serves it (and lists it in OpenAPI) from this description; the TypeScript client calls
 * it from the same one, so the two cannot drift apart.
 */
export interface Endpoint<
  P extends Schema = Schema,
  Q extends Schema = Schema,
  B extends Schema = Schema,
  O extends Schema = Schema,
  A extends boolean = boolean
> {
  readonly method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE"
  /** under `/api/v1`, with `:name` parameters: `/projects/:projectId` */
  readonly path: `/${string}`
  readonly summary: string
  readonly tag: string
  /** default true: the caller must be signed in or send an API token */
  readonly auth?: A
  readonly params?: P
  readonly query?: Q
  readonly body?: B
  readonly response: O
  /** default 200 */
  readonly status?: 200 | 201 | 202 | 302
}

/** What an endpoint without params, query or body takes. */
const Nothing = z.object({})
type Nothing = typeof Nothing

export const endpoint = <
  P extends Schema = Nothing,
  Q extends Schema = Nothing,
  B extends Schema = Nothing,
  O extends Schema = Schema,
  A extends boolean = true
>(
  spec: Endpoint<P, Q, B, O, A>
) => spec

export const PREFIX = "/api/v1"
