import { type HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Api, Consume, Nats, NatsAccounts } from "@sam/bus"
import { Effect, Option, Redacted } from "effect"
import { requireNodeVisible } from "../Access.js"
import { ApiError } from "../ApiError.js"
import { BootLimits } from "../boot/BootLimiter.js"
import { bootScripts, joinCommand } from "../boot/BootScripts.js"
import * as BootTokens from "../boot/BootTokens.js"
import { nodeNatsUrl } from "../boot/NatsWebSocketProxy.js"
import * as NodeArtifact from "../boot/NodeArtifact.js"
import * as NodeBootLog from "../boot/NodeBootLog.js"
import { clientAddress } from "../ClientAddress.js"
import { GatewayConfig } from "../Config.js"
import * as Route from "../Route.js"

const E = Api.NodeBootEndpoints

const addressOf = (request: HttpServerRequest.HttpServerRequest) => clientAddress(request) ?? "unknown"

const throttled = (seconds: number) =>
  new ApiError({ code: "rate_limited", message: `too many requests; try again in ${seconds} s`, retryAfter: seconds })

const limitDownloads = (address: string) =>
  Effect.flatMap(BootLimits, ({ downloads }) => {
    const wait = downloads.blocked(address)
    if (wait !== undefined) return Effect.fail(throttled(wait))
    downloads.count(address)
    return Effect.void
  })

/** Seconds to wait while `address`, or everyone, made too many refused exchanges. */
const refusalWait = (limits: BootLimits["Type"], address: string) =>
  limits.refusedPerAddress.blocked(address) ?? limits.refusedTotal.blocked("all")

const countRefusal = (limits: BootLimits["Type"], address: string) => {
  limits.refusedPerAddress.count(address)
  limits.refusedTotal.count("all")
}

const artifact = NodeArtifact.current().pipe(
  Effect.catchTag("ArtifactError", (e) =>
    Effect.logError(e.message).pipe(
      Effect.zipRight(Effect.fail(new ApiError({ code: "unavailable", message: "the vm-agent artifact is not built" })))
    )
  )
)

const runtime = NodeArtifact.runtime().pipe(
  Effect.catchTag("ArtifactError", (e) =>
    Effect.logError(e.message).pipe(
      Effect.zipRight(Effect.fail(new ApiError({ code: "unavailable", message: "no Node runtime to serve" })))
    )
  )
)

const REFUSED =
  "the bootstrap token was refused: it is unknown, was used already, has expired, or is not this node's " +
  "(ask for a new one: a new server, or `sam node token`)"

/**
 * The boot path's routes (ADR 0027). The exchange and the downloads are unauthenticated: the exchange
 * takes a token only once and returns only its node's credentials; refusals are counted per address.
 */
export const routes = [
  Route.make(E.exchangeBootToken, ({ body, request }) =>
    Effect.gen(function* () {
      const address = addressOf(request)
      const limits = yield* BootLimits
      const wait = refusalWait(limits, address)
      if (wait !== undefined) return yield* throttled(wait)
      const accounts = yield* Effect.serviceOption(NatsAccounts.NatsAccounts)
      if (Option.isNone(accounts))
        return yield* new ApiError({ code: "unavailable", message: "this gateway cannot mint node credentials" })
      const config = yield* GatewayConfig
      // Over the gateway's own address when NATS's WebSocket is served at /nats, else NATS's own URL.
      const natsUrl =
        config.nodeNatsUrl ??
        (config.natsWebSocket !== undefined ? nodeNatsUrl(config.nodePublicUrl ?? config.publicUrl) : config.natsUrl)
      if (natsUrl === undefined)
        return yield* new ApiError({ code: "unavailable", message: "this gateway does not know the nodes' NATS URL" })
      const sql = yield* SqlClient.SqlClient
      const nats = yield* Nats
      const ttl = NatsAccounts.nodeCredsTtlSeconds()
      const outcome = yield* sql
        .withTransaction(
          Effect.gen(function* () {
            const locked = yield* BootTokens.lock(body.token, body.nodeId, body.publicKey)
            if (locked.token === undefined) return { refused: locked.refused }
            const token = locked.token
            if (token.purpose === "join" && !token.repeat) {
              yield* sql`
              INSERT INTO nodes (id, provider, status, owner_id, max_workspaces, provider_request_id)
              VALUES (${token.nodeId}, 'joined', 'provisioning', ${token.ownerId},
                ${Number(process.env.SAM_NODE_MAX_WORKSPACES ?? 4)}, 'join')`
            }
            // A JWT for the key the node made: what this answer carries is useless without its seed.
            const user = yield* accounts.value.renewNode(token.nodeId, body.publicKey, ttl)
            yield* Consume.ensureConsumer("SAM_NODE", Consume.nodeConsumer(token.nodeId)).pipe(
              Effect.provideService(Nats, nats)
            )
            // A repeat keeps the first use's time, so the window does not slide.
            if (!token.repeat) yield* BootTokens.markUsed(body.token, address, body.publicKey)
            const stored = yield* NodeBootLog.store(token.nodeId, body.bootLog ?? [])
            return { token, user, stored }
          })
        )
        .pipe(Effect.orDie)
      if (outcome.refused !== undefined) {
        countRefusal(limits, address)
        yield* Effect.logWarning(`node boot: a bootstrap exchange from ${address} was refused (${outcome.refused})`)
        return yield* new ApiError({ code: "unauthenticated", message: REFUSED })
      }
      yield* NodeBootLog.announce(outcome.token.nodeId, outcome.stored)
      yield* Effect.logInfo(
        `node boot: node ${outcome.token.nodeId} (${outcome.token.provider}) ` +
          `${outcome.token.repeat ? "repeated its exchange (same key)" : "exchanged its bootstrap token"} from ${address}`
      )
      return {
        nodeId: outcome.token.nodeId,
        natsUrl,
        jwt: outcome.user.jwt,
        expiresAt: outcome.user.expiresAt.toISOString()
      }
    })
  ),
  Route.make(E.appendBootLog, ({ body, request }) =>
    Effect.gen(function* () {
      const address = addressOf(request)
      const limits = yield* BootLimits
      const wait = refusalWait(limits, address)
      if (wait !== undefined) return yield* throttled(wait)
      const busy = limits.logAppends.blocked(body.nodeId)
      if (busy !== undefined) return yield* throttled(busy)
      const sql = yield* SqlClient.SqlClient
      const outcome = yield* sql
        .withTransaction(
          Effect.gen(function* () {
            // Locked as the exchange locks it: a line is never stored after the exchange that spends the token.
            const locked = yield* BootTokens.lock(body.token, body.nodeId)
            if (locked.token === undefined) return { refused: locked.refused }
            // A joining machine's node is made by its exchange: its lines so far go with that.
            if (locked.token.purpose === "join") return { join: true as const }
            const [count] = yield* sql<{ n: number }>`
              SELECT count(*)::int AS n FROM node_boot_log WHERE node_id = ${body.nodeId}`
            if ((count?.n ?? 0) >= NodeBootLog.MAX_LINES) return { full: true as const }
            return { stored: yield* NodeBootLog.store(body.nodeId, body.entries) }
          })
        )
        .pipe(Effect.orDie)
      if ("refused" in outcome) {
        countRefusal(limits, address)
        yield* Effect.logWarning(`node boot: boot-log lines from ${address} were refused (${outcome.refused})`)
        return yield* new ApiError({ code: "unauthenticated", message: REFUSED })
      }
      limits.logAppends.count(body.nodeId)
      if ("join" in outcome)
        return yield* new ApiError({
          code: "conflict",
          message: "a joining machine's node is made by its exchange; its boot log so far goes with the exchange"
        })
      if ("full" in outcome)
        return yield* new ApiError({
          code: "rate_limited",
          message: `this node's boot log is full (${NodeBootLog.MAX_LINES} lines)`,
          retryAfter: 3600
        })
      yield* NodeBootLog.announce(body.nodeId, outcome.stored)
      return { stored: outcome.stored.length }
    })
  ),
  Route.make(E.vmAgentArtifact, ({ request }) =>
    Effect.gen(function* () {
      yield* limitDownloads(addressOf(request))
      const current = yield* artifact
      const bytes = yield* NodeArtifact.read(current).pipe(Effect.orDie)
      return {
        response: HttpServerResponse.uint8Array(bytes, {
          contentType: "application/gzip",
          headers: { "x-sam-sha256": current.sha256, "cache-control": "no-store" }
        })
      }
    })
  ),
  Route.make(E.vmAgentChecksum, ({ request }) =>
    Effect.gen(function* () {
      yield* limitDownloads(addressOf(request))
      const current = yield* artifact
      return { response: HttpServerResponse.text(`${current.sha256}  vm-agent.tar.gz\n`) }
    })
  ),
  Route.make(E.nodeRuntime, ({ request }) =>
    Effect.gen(function* () {
      yield* limitDownloads(addressOf(request))
      const current = yield* runtime
      const bytes = yield* NodeArtifact.read(current).pipe(Effect.orDie)
      return {
        response: HttpServerResponse.uint8Array(bytes, {
          contentType: "application/gzip",
          headers: { "x-sam-sha256": current.sha256, "x-sam-arch": current.arch, "cache-control": "no-store" }
        })
      }
    })
  ),
  Route.make(E.nodeRuntimeChecksum, ({ request }) =>
    Effect.gen(function* () {
      yield* limitDownloads(addressOf(request))
      const current = yield* runtime
      return { response: HttpServerResponse.text(`${current.sha256}  node-runtime.tar.gz ${current.arch}\n`) }
    })
  ),
  Route.make(E.bootScript, ({ request }) =>
    Effect.gen(function* () {
      yield* limitDownloads(addressOf(request))
      return { response: HttpServerResponse.text(bootScripts().boot, { contentType: "text/x-shellscript" }) }
    })
  ),
  Route.make(E.createJoinToken, ({ principal }) =>
    Effect.gen(function* () {
      const config = yield* GatewayConfig
      const issued = yield* BootTokens.issueJoinWithinCaps(principal.userId).pipe(
        Effect.catchTag("SqlError", Effect.die),
        Effect.flatMap((outcome) =>
          outcome.refused === undefined
            ? Effect.succeed(outcome.issued)
            : Effect.fail(new ApiError({ code: "conflict", message: outcome.refused }))
        )
      )
      const current = yield* Effect.option(NodeArtifact.current())
      const token = Redacted.value(issued.token)
      const url = config.nodePublicUrl ?? config.publicUrl
      return {
        nodeId: issued.nodeId,
        token,
        expiresAt: issued.expiresAt.toISOString(),
        command: joinCommand(url, token, Option.getOrUndefined(current)?.sha256),
        samCommand: `sam node join ${url} ${token}`
      }
    })
  ),
  Route.make(E.nodeBootLog, ({ principal, params }) =>
    Effect.gen(function* () {
      yield* requireNodeVisible(principal, params.nodeId)
      return { entries: yield* NodeBootLog.read(params.nodeId).pipe(Effect.orDie) }
    })
  )
]
