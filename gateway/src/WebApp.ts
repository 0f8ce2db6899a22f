import { existsSync } from "node:fs"
import type { IncomingMessage, ServerResponse } from "node:http"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { type HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Context, Effect } from "effect"

type Next = (error?: unknown) => void
type Middleware = (req: IncomingMessage, res: ServerResponse, next: Next) => Promise<void> | void

/** What the web app's server build (`web/src/entry.node-server.tsx`) exports. */
interface WebModule {
  readonly router: Middleware
  readonly notFound: Middleware
  readonly staticFile: Middleware
  readonly configure: (config: WebConfig) => void
}

/** What the app's route loaders need of the gateway that serves it. */
export interface WebConfig {
  /** where the SSR side calls the API (this gateway, on loopback) */
  readonly apiUrl: string
  /** "Sign in with GitHub" is offered only when it is configured */
  readonly github: boolean
  /** the browser's address of a request to the app (through trusted proxies), for its calls on the browser's behalf */
  readonly clientAddress: (req: Pick<IncomingMessage, "socket" | "headers">) => string | undefined
  /** the headers that make such a call count as the browser's in the API's per-address limits (sign-in) */
  readonly clientHeaders: (address: string | undefined) => Record<string, string>
}

/**
 * The built web app (Qwik City's node-server build), served for every path that is not the API's
 * or the feed's; `undefined` when the app has not been built (then those paths answer the JSON 404).
 */
export class WebApp extends Context.Tag("sam/WebApp")<
  WebApp,
  {
    readonly serve?: (
      request: HttpServerRequest.HttpServerRequest
    ) => Effect.Effect<HttpServerResponse.HttpServerResponse>
    readonly configure: (config: WebConfig) => void
  }
>() {}

/** `web/dist/server/entry.node-server.js` of this repository, or `SAM_WEB_DIST` (a `dist` folder). */
export const defaultEntry = (env: NodeJS.ProcessEnv = process.env) =>
  join(
    env.SAM_WEB_DIST ?? resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "web", "dist"),
    "server",
    "entry.node-server.js"
  )

/** Runs one connect-style middleware: true when it handed the request on (`next()`), false when it answered. */
const step = (middleware: Middleware, req: IncomingMessage, res: ServerResponse) =>
  new Promise<boolean>((resolve, reject) => {
    let passed = false
    try {
      Promise.resolve(
        middleware(req, res, (error) => {
          if (error !== undefined) return reject(error)
          passed = true
          resolve(true)
        })
      ).then(() => resolve(passed), reject)
    } catch (error) {
      reject(error)
    }
  })

/**
 * Serves one request with the app's chain (static file → route → not found). The effect ends only
 * once the app has finished with the response (or the client is gone), and cannot be interrupted
 * before: Effect's HTTP server then sees an ended response and writes nothing of its own.
 */
const chain =
  (module: WebModule) =>
  (request: HttpServerRequest.HttpServerRequest): Effect.Effect<HttpServerResponse.HttpServerResponse> =>
    Effect.async<void>((resume) => {
      const req = NodeHttpServerRequest.toIncomingMessage(request)
      const res = NodeHttpServerRequest.toServerResponse(request)
      const ended = new Promise<void>((resolve) => {
        if (res.writableEnded || res.destroyed) return resolve()
        res.once("finish", resolve)
        res.once("close", resolve)
      })
      const serve = async () => {
        try {
          if (!(await step(module.staticFile, req, res))) return
          if (!(await step(module.router, req, res))) return
          await step(module.notFound, req, res)
        } catch (error) {
          if (!res.headersSent) {
            res.writeHead(500, { "content-type": "text/plain; charset=utf-8" })
            res.end(`web app error: ${error instanceof Error ? error.message : String(error)}`)
          } else if (!res.writableEnded) res.end()
        }
      }
      serve()
        .then(() => ended)
        .then(() => resume(Effect.void))
    }).pipe(Effect.uninterruptible, Effect.as(HttpServerResponse.empty()))

/** Loads the app's server build if there is one. */
export const load = Effect.fn("WebApp.load")(function* (entry: string = defaultEntry()) {
  if (!existsSync(entry)) return WebApp.of({ configure: () => {} })
  const module = (yield* Effect.promise(() => import(pathToFileURL(entry).href))) as WebModule
  return WebApp.of({ serve: chain(module), configure: module.configure })
})
