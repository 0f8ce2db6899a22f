import { readFile } from "node:fs/promises"
import { join } from "node:path"
import type { Api } from "@sam/bus"
import { Client } from "@sam/gateway/client"
import { Effect } from "effect"
import type { z } from "zod"
import { nodeTransport } from "./HttpTransport.js"
import * as StackDefaults from "./StackDefaults.js"
import { StackError } from "./StackError.js"

/** Where the CLI finds the gateway: SAM_GATEWAY_URL, else http://127.0.0.1:$SAM_GATEWAY_PORT (8080). */
export const gatewayUrl = (env: NodeJS.ProcessEnv = process.env) =>
  env.SAM_GATEWAY_URL ?? `http://127.0.0.1:${env.SAM_GATEWAY_PORT ?? 8080}`

const readText = (path: string) =>
  Effect.promise(() =>
    readFile(path, "utf8").then(
      (text) => text.trim(),
      () => undefined
    )
  )

/** The CLI's API token: SAM_TOKEN, else the one `sam up` keeps for this machine in `<dataDir>/cli.token`. */
const token = (env: NodeJS.ProcessEnv) =>
  Effect.gen(function* () {
    if (env.SAM_TOKEN !== undefined && env.SAM_TOKEN !== "") return { token: env.SAM_TOKEN, from: "SAM_TOKEN" }
    const file = join(StackDefaults.defaults(env).dataDir, "cli.token")
    const text = yield* readText(file)
    if (text === undefined || text === "") {
      return yield* new StackError({
        step: "unauthenticated",
        message: `no API token: set SAM_TOKEN, or run \`./sam up\` once with this data directory (it writes ${file})`
      })
    }
    return { token: text, from: file }
  })

export interface ApiClient {
  readonly url: string
  readonly token: string
  /** One API call; a failure is a `StackError` whose step is the API's error code (`✗ <code>: <message>`). */
  readonly call: <
    P extends z.ZodType,
    Q extends z.ZodType,
    B extends z.ZodType,
    O extends z.ZodType,
    A extends boolean
  >(
    endpoint: Api.Endpoint<P, Q, B, O, A>,
    ...input: Client.Args<P, Q, B>
  ) => Effect.Effect<z.output<O>, StackError>
}

/**
 * A 400's field issues (`details: [{path, message}]`), as `: token: a Hetzner API token is 64 characters long`;
 * one that only repeats the error's own message is not said twice.
 */
const fieldIssues = (details: unknown, message: string) => {
  if (!Array.isArray(details)) return ""
  const lines = details.flatMap((d: { path?: unknown; message?: unknown }) =>
    typeof d?.message === "string" && d.message !== message
      ? [`${typeof d.path === "string" && d.path !== "" ? `${d.path}: ` : ""}${d.message}`]
      : []
  )
  return lines.length === 0 ? "" : `: ${lines.slice(0, 5).join("; ")}`
}

/** The HTTP API of a running `sam up` (or any gateway at SAM_GATEWAY_URL), signed in with the CLI's token. */
export const api = (env: NodeJS.ProcessEnv = process.env) =>
  Effect.gen(function* () {
    const url = gatewayUrl(env)
    const credential = yield* token(env)
    const client = Client.make({ baseUrl: url, token: credential.token, transport: nodeTransport })
    const call: ApiClient["call"] = (endpoint, ...input) =>
      client.call(endpoint, ...input).pipe(
        Effect.mapError((error) => {
          const hint =
            error.code === "unreachable"
              ? " (is `./sam up` running? set SAM_GATEWAY_URL or SAM_GATEWAY_PORT if it listens elsewhere)"
              : error.code === "unauthenticated"
                ? ` (the token from ${credential.from})`
                : ""
          return new StackError({
            step: error.code,
            message: `${error.message}${fieldIssues(error.details, error.message)}${hint}`,
            cause: error
          })
        })
      )
    return { url, token: credential.token, call } satisfies ApiClient
  })
