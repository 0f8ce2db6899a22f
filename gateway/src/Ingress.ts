import type { SqlClient } from "@effect/sql"
import { Api, ApiTokenId, makeId, Nats, Subjects, Trace, UserId } from "@sam/bus"
import { Effect, FiberSet } from "effect"
import type { z } from "zod"
import { ApiError, issues } from "./ApiError.js"
import { Auth, type Principal } from "./Auth.js"
import type { GatewayConfig } from "./Config.js"
import * as Permissions from "./services/Permissions.js"
import * as Sessions from "./services/Sessions.js"
import * as Tasks from "./services/Tasks.js"

/**
 * The NATS ingress for programmatic clients (design §4, ADR 0011): request/reply on
 * `sam.in.<userId>.<tokenId>.<command>`. The broker lets a client publish only under the user and
 * API token its credentials were minted for, so both are read from the subject; the token is checked
 * on every request (a revoked token is refused at once), and the command runs through the same
 * service functions, schemas and membership checks as the HTTP API, with the same error codes.
 * Every gateway subscribes in one queue group, so each request is handled by one of them.
 */

export const QUEUE = "sam-ingress"
const MAX_BYTES = 1_048_576

type Subscription = ReturnType<Nats["Type"]["nc"]["subscribe"]>
type Msg = Subscription extends AsyncIterable<infer M> ? M : never
type Requirements = SqlClient.SqlClient | Nats | GatewayConfig
type Input<C extends Api.IngressCommand> = z.output<(typeof Api.IngressCommands)[C]["request"]>

const handlers: {
  readonly [C in Api.IngressCommand]: (
    principal: Principal,
    input: Input<C>
  ) => Effect.Effect<unknown, ApiError, Requirements>
} = {
  "task.create": (principal, { projectId, ...body }) => Tasks.createTask(principal, projectId, body),
  "task.cancel": (principal, { taskId, ...body }) => Tasks.cancelTask(principal, taskId, body),
  "session.prompt": (principal, { sessionId, ...body }) => Sessions.prompt(principal, sessionId, body),
  "session.cancel": (principal, { sessionId }) => Sessions.cancel(principal, sessionId),
  "session.answer-permission": (principal, { sessionId, requestId, ...answer }) =>
    Permissions.answer(principal, sessionId, requestId, answer)
}

const unauthenticated = (message: string) => new ApiError({ code: "unauthenticated", message })
const decoder = new TextDecoder("utf-8", { fatal: true })
const encoder = new TextEncoder()

/** Who is asking, as the subject (and so the broker) says; the token must still be active. */
const principalOf = (auth: Auth, subject: string) =>
  Effect.gen(function* () {
    const parsed = Subjects.parseIngress(subject)
    const userId = UserId.safeParse(parsed?.userId)
    const tokenId = ApiTokenId.safeParse(parsed?.tokenId)
    if (parsed === undefined || !userId.success || !tokenId.success) {
      return yield* unauthenticated("send requests to sam.in.<userId>.<tokenId>.<command> with minted credentials")
    }
    if (!(yield* auth.tokenActive(userId.data, tokenId.data))) {
      return yield* unauthenticated("the API token these credentials were minted from is unknown, expired or revoked")
    }
    const principal: Principal = { userId: userId.data, via: "token", credentialId: tokenId.data }
    return { principal, commandName: parsed.commandName }
  })

const parseJson = (data: Uint8Array) =>
  Effect.try({
    try: () => JSON.parse(decoder.decode(data)) as unknown,
    catch: (e) =>
      new ApiError({ code: "invalid_json", message: `the request is not JSON: ${e instanceof Error ? e.message : e}` })
  })

/** One request, start to reply value: never fails; a defect becomes `internal`. */
const answer = (auth: Auth, msg: Msg): Effect.Effect<Api.IngressReply, never, Requirements> =>
  Effect.gen(function* () {
    const { principal, commandName } = yield* principalOf(auth, msg.subject)
    if (!Api.isIngressCommand(commandName)) {
      return yield* new ApiError({
        code: "not_found",
        message: `unknown command ${commandName}`,
        details: { commands: Api.ingressCommandNames }
      })
    }
    if (msg.data.length > MAX_BYTES) {
      return yield* new ApiError({ code: "payload_too_large", message: `requests are limited to ${MAX_BYTES} bytes` })
    }
    const spec = Api.IngressCommands[commandName]
    const input = spec.request.safeParse(yield* parseJson(msg.data))
    if (!input.success) {
      return yield* new ApiError({
        code: "invalid_body",
        message: "the request is not valid",
        details: issues(input.error)
      })
    }
    const handler = handlers[commandName] as (
      p: Principal,
      i: unknown
    ) => Effect.Effect<unknown, ApiError, Requirements>
    const result = spec.result.safeParse(yield* handler(principal, input.data))
    if (!result.success) return yield* Effect.die(new Error(`${commandName}: bad result: ${result.error.message}`))
    return { ok: true as const, result: result.data }
  }).pipe(
    Effect.catchTag("ApiError", (error) => Effect.succeed({ ok: false as const, error: error.body })),
    Effect.catchAllDefect((defect) =>
      Effect.logError(`ingress request on ${msg.subject} failed`, defect).pipe(
        Effect.as({
          ok: false as const,
          error: { code: "internal", message: "the gateway failed to handle this request" }
        })
      )
    )
  )

/**
 * Requests reach the ingress from the clients' own accounts through a service import, so the server
 * has rewritten their reply subject to a one-off `_R_.…` that routes back to the requester alone
 * (ADR 0016). A reply subject of any other shape was set inside the SAM account, by no client: the
 * request is dropped unanswered and not run, so the gateway can never be made to publish to a
 * subject of someone else's choosing (`$JS.API.…`, `$KV.…`).
 */
export const isServerMadeReply = (reply: string | undefined) =>
  reply === undefined || reply === "" || reply.startsWith("_R_.")

const handle = (auth: Auth, msg: Msg) => (isServerMadeReply(msg.reply) ? answerOn(auth, msg) : dropForeignReply(msg))

const dropForeignReply = (msg: Msg) =>
  Effect.logWarning(`ingress request on ${msg.subject} with reply subject ${msg.reply} dropped: not a client's`)

const answerOn = (auth: Auth, msg: Msg) => {
  // The request's id is the correlation id of everything it causes (issue 12), as over HTTP.
  const requestId = makeId("req")
  return answer(auth, msg).pipe(
    Trace.withCorrelation(requestId),
    Effect.flatMap((reply) =>
      Effect.sync(() => {
        // A request published without a reply subject gets nothing back (it still ran).
        if (msg.reply) msg.respond(encoder.encode(JSON.stringify({ ...reply, requestId })))
      })
    ),
    Effect.catchAllDefect((defect) => Effect.logWarning(`ingress could not reply on ${msg.subject}`, defect)),
    Effect.withSpan("Ingress.request", {
      captureStackTrace: false,
      attributes: { subject: msg.subject, "request.id": requestId }
    })
  )
}

/**
 * Subscribe the ingress in the current scope (queue group `sam-ingress`) and return once the server
 * has the subscription. Requests are handled concurrently, at most `concurrency` at a time; closing
 * the scope unsubscribes and interrupts requests still running (their clients time out).
 */
export const start = Effect.fn("Ingress.start")(function* (options: { readonly concurrency?: number } = {}) {
  const { nc } = yield* Nats
  const auth = yield* Auth
  const permits = yield* Effect.makeSemaphore(options.concurrency ?? 64)
  const fibers = yield* FiberSet.make()
  const run = yield* FiberSet.runtime(fibers)<Requirements>()
  yield* Effect.acquireRelease(
    Effect.sync(() =>
      nc.subscribe(Subjects.ingressEverything, {
        queue: QUEUE,
        callback: (error, msg) => {
          if (error) run(Effect.logError("ingress subscription error", error))
          else run(permits.withPermits(1)(handle(auth, msg)))
        }
      })
    ),
    (subscription) => Effect.sync(() => subscription.unsubscribe())
  )
  yield* Effect.promise(() => nc.flush())
})
