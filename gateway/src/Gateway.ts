import { createServer } from "node:http"
import type { Socket } from "node:net"
import {
  Headers,
  HttpMiddleware,
  HttpRouter,
  HttpServer,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import type { SqlClient } from "@effect/sql"
import type { Nats } from "@sam/bus"
import { Context, Effect, FiberRef, Layer, Redacted, Tracer } from "effect"
import { ApiError } from "./ApiError.js"
import { Auth } from "./Auth.js"
import * as BootLimiter from "./boot/BootLimiter.js"
import { proxyNatsWebSocket } from "./boot/NatsWebSocketProxy.js"
import * as NodeBootLog from "./boot/NodeBootLog.js"
import { KEY_HEADER, webClientHeaders, webRequestAddress } from "./ClientAddress.js"
import { GatewayConfig, type GatewayOptions } from "./Config.js"
import * as Feed from "./feed/Feed.js"
import * as FeedRoute from "./feed/FeedRoute.js"
import { guardUpgrades } from "./feed/Upgrade.js"
import * as GitHubApp from "./GitHubApp.js"
import * as GitHubPullRequests from "./GitHubPullRequests.js"
import * as GitHubRepoAccess from "./GitHubRepoAccess.js"
import * as Health from "./Health.js"
import * as Ingress from "./Ingress.js"
import * as LoginThrottle from "./LoginThrottle.js"
import { localReposConfig } from "./RepoUrl.js"
import * as Revocation from "./Revocation.js"
import * as Route from "./Route.js"
import * as AgentRoutes from "./routes/Agents.js"
import * as AuthRoutes from "./routes/Auth.js"
import * as CloudRoutes from "./routes/Cloud.js"
import * as CredentialRoutes from "./routes/Credentials.js"
import * as GitHubRoutes from "./routes/GitHub.js"
import * as GitHubAppRoutes from "./routes/GitHubApp.js"
import * as MemberRoutes from "./routes/Members.js"
import * as NodeBootRoutes from "./routes/NodeBoot.js"
import * as NodeRoutes from "./routes/Nodes.js"
import * as NotificationRoutes from "./routes/Notifications.js"
import * as ProjectRoutes from "./routes/Projects.js"
import * as SessionRoutes from "./routes/Sessions.js"
import * as TaskRoutes from "./routes/Tasks.js"
import * as TraceRoutes from "./routes/Trace.js"
import * as WorkspaceRoutes from "./routes/Workspaces.js"
import * as WebApp from "./WebApp.js"

export type { GatewayOptions } from "./Config.js"

const list = (value: string | undefined) =>
  value === undefined
    ? undefined
    : value
        .split(",")
        .map((item) => item.trim().toLowerCase())
        .filter((item) => item !== "")

/**
 * Host and port from SAM_GATEWAY_HOST / SAM_GATEWAY_PORT; GitHub sign-in from SAM_GITHUB_* when set.
 * Who may sign in with GitHub: SAM_GITHUB_ALLOWED_LOGINS and SAM_GITHUB_ALLOWED_ORGS (comma
 * separated), or anyone with SAM_GITHUB_ALLOW_ANY=1; with none of them nobody may.
 */
export const defaults = (env: NodeJS.ProcessEnv = process.env): GatewayOptions => {
  const allowedLogins = list(env.SAM_GITHUB_ALLOWED_LOGINS)
  const allowedOrgs = list(env.SAM_GITHUB_ALLOWED_ORGS)
  const github =
    env.SAM_GITHUB_CLIENT_ID !== undefined && env.SAM_GITHUB_CLIENT_SECRET !== undefined
      ? {
          clientId: env.SAM_GITHUB_CLIENT_ID,
          clientSecret: Redacted.make(env.SAM_GITHUB_CLIENT_SECRET),
          webUrl: env.SAM_GITHUB_URL ?? "https://github.com",
          apiUrl: env.SAM_GITHUB_API_URL ?? "https://api.github.com",
          ...(allowedLogins === undefined ? {} : { allowedLogins }),
          ...(allowedOrgs === undefined ? {} : { allowedOrgs }),
          allowAny: env.SAM_GITHUB_ALLOW_ANY === "1"
        }
      : undefined
  const githubApp = GitHubApp.fromEnv(env)
  return {
    host: env.SAM_GATEWAY_HOST ?? "127.0.0.1",
    port: Number(env.SAM_GATEWAY_PORT ?? 8080),
    ...(env.SAM_PUBLIC_URL === undefined ? {} : { publicUrl: env.SAM_PUBLIC_URL }),
    ...(env.SAM_NODE_PUBLIC_URL === undefined ? {} : { nodePublicUrl: env.SAM_NODE_PUBLIC_URL }),
    ...(env.SAM_NODE_NATS_URL === undefined ? {} : { nodeNatsUrl: env.SAM_NODE_NATS_URL }),
    ...(github === undefined ? {} : { github }),
    ...(githubApp === undefined ? {} : { githubApp })
  }
}

/** Every REST route, in the order OpenAPI lists them. */
export const routes: ReadonlyArray<Route.Route> = [
  ...AuthRoutes.routes,
  ...CredentialRoutes.routes,
  ...GitHubRoutes.routes,
  ...ProjectRoutes.routes,
  ...MemberRoutes.routes,
  ...TaskRoutes.routes,
  ...TraceRoutes.routes,
  ...SessionRoutes.routes,
  ...WorkspaceRoutes.routes,
  ...NodeRoutes.routes,
  ...NotificationRoutes.routes,
  ...AgentRoutes.routes,
  ...GitHubAppRoutes.routes,
  ...CloudRoutes.routes,
  ...NodeBootRoutes.routes
]

const notFound = HttpServerResponse.unsafeJson(
  new ApiError({ code: "not_found", message: "no such route (see /api/v1/openapi.json)" }).body,
  { status: 404 }
)

const isApi = (url: string) => url === "/api" || url.startsWith("/api/") || url.startsWith("/api?")

/**
 * The HTTP app: the API under /api/v1 (with its OpenAPI document) and the feed; an unknown /api path
 * is a JSON 404; any other path is the web app's (its last route), or the JSON 404 when it is not built.
 */
export const app = Route.router(routes, { title: "SAM API", version: "1" }).pipe(
  HttpRouter.concat(FeedRoute.router),
  Effect.catchTag("RouteNotFound", () =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const web = yield* WebApp.WebApp
      return web.serve === undefined || isApi(request.url) ? notFound : yield* web.serve(request)
    })
  )
)

/** How long a stopping gateway lets requests in flight and WebSocket close handshakes finish. */
const SHUTDOWN_GRACE_MS = 2_000

/**
 * Runs just before the HTTP server closes (finalizers run last first). `server.close()` waits for every
 * connection to end, and some never end on their own: a client that sent half a request is waited for
 * until Node's headers timeout (60 s), a feed socket whose peer never answers the close frame for ws'
 * 30 s (test/integration/gateway/shutdown.test.ts measured both), and a request that arrives on a
 * keep-alive connection once the handler is gone is answered by nobody. So the connections still open
 * after the grace are destroyed.
 */
const letGoAfterGrace = (http: ReturnType<typeof createServer> | undefined, sockets: Set<Socket>) => {
  if (http === undefined) return
  const timer = setTimeout(() => {
    http.closeAllConnections()
    for (const socket of sockets) socket.destroy()
  }, SHUTDOWN_GRACE_MS)
  timer.unref()
  http.once("close", () => clearTimeout(timer))
}

/**
 * The gateway on one port, in the current scope: returns the URL it listens on. It needs the
 * ledger (`SqlClient`) and the bus (`Nats`); closing the scope stops the server.
 */
export const start = Effect.fn("Gateway.start")(function* (options: GatewayOptions) {
  // Every connection, upgraded ones included (the feed's and /nats' WebSockets leave the HTTP server's own list).
  const sockets = new Set<Socket>()
  let http: ReturnType<typeof createServer> | undefined
  const server = NodeHttpServer.layer(
    () => {
      http = createServer()
      http.on("connection", (socket: Socket) => {
        sockets.add(socket)
        socket.once("close", () => sockets.delete(socket))
      })
      if (options.natsWebSocket !== undefined) proxyNatsWebSocket(http, options.natsWebSocket)
      // last, so that it sees every upgrade first, the proxied ones too
      guardUpgrades(http)
      return http
    },
    { port: options.port, host: options.host }
  )
  // The port is known only once bound (0 in tests): routes read the URL after that.
  let url = `http://${options.host}:${options.port}`
  const localRepos = options.localRepos ?? (yield* localReposConfig)
  const web = yield* WebApp.load()
  const config = GatewayConfig.of({
    ...options,
    localRepos,
    get publicUrl() {
      return options.publicUrl ?? url
    }
  })
  // the boot routes' limits, shared by the HTTP routes and the boot-log subject; one set per gateway
  const bootLimits = BootLimiter.make()
  const context = yield* Layer.build(
    HttpServer.serve(app).pipe(
      HttpMiddleware.withTracerDisabledWhen(FeedRoute.tokenInUrl),
      // a span records a request's headers: the web app's key as little as a cookie
      Layer.locallyWith(Headers.currentRedactedNames, (names) => [...names, KEY_HEADER]),
      // each request a trace of its own (or the caller's, from its `traceparent`), not a child of the gateway's start
      Layer.locallyWith(FiberRef.currentContext, Context.omit(Tracer.ParentSpan)),
      Layer.provideMerge(server),
      Layer.provide(Auth.Default),
      Layer.provide(Health.layer),
      Layer.provide(LoginThrottle.layer(options.loginThrottle)),
      Layer.provide(Layer.succeed(BootLimiter.BootLimits, bootLimits)),
      Layer.provide(Revocation.layer),
      Layer.provide(Feed.layer(options.feed)),
      Layer.provide(Layer.succeed(GatewayConfig, config)),
      Layer.provide(Layer.succeed(WebApp.WebApp, web))
    )
  )
  yield* Effect.addFinalizer(() => Effect.sync(() => letGoAfterGrace(http, sockets)))
  yield* Ingress.start().pipe(Effect.provide(Auth.Default), Effect.provideService(GatewayConfig, config))
  yield* GitHubRepoAccess.serve(options.githubApp)
  yield* NodeBootLog.serve().pipe(Effect.provideService(BootLimiter.BootLimits, bootLimits))
  if (options.githubApp !== undefined) {
    yield* Effect.forkScoped(GitHubPullRequests.run(options.githubApp, () => config.publicUrl))
  }
  const address = Context.get(context, HttpServer.HttpServer).address
  url = `http://${options.host}:${address._tag === "TcpAddress" ? address.port : options.port}`
  const loopback = options.host === "0.0.0.0" || options.host === "::" ? "127.0.0.1" : options.host
  web.configure({
    apiUrl: `http://${loopback}:${address._tag === "TcpAddress" ? address.port : options.port}`,
    github: options.github !== undefined,
    clientAddress: (req) => webRequestAddress(req),
    clientHeaders: webClientHeaders
  })
  return { url }
})

export type Requirements = SqlClient.SqlClient | Nats
