import type { PromptResponse, RequestPermissionResponse, StopReason } from "@agentclientprotocol/sdk"
import { Domain } from "@sam/bus"
import { Config, Deferred, Duration, Effect, Exit, Option, PubSub, Scope, Stream, SubscriptionRef } from "effect"
import { bootTicks } from "../runtime/internal/processGroup.js"
import {
  AgentCrashed,
  AgentProtocolError,
  type AgentStartError,
  type PromptError,
  PromptRejected
} from "./AcpErrors.js"
import type { AgentExit, AgentSpawner } from "./AgentProcess.js"
import type { HarnessCommand } from "./HarnessCommand.js"
import { type Incarnation, startIncarnation } from "./internal/Incarnation.js"
import { autoApprove, PermissionDesk } from "./internal/PermissionDesk.js"
import { eventOfUpdate, type SessionEvent, type SessionEventBody } from "./SessionEvent.js"

export interface SessionHostOptions {
  readonly command: HarnessCommand
  /**
   * How the agent is started; default: on the host, in a process group of its own. `workspaceSpawner` starts it
   * inside a workspace (a Docker container), where its argv, cwd and process group then are.
   */
  readonly spawn?: AgentSpawner
  /** The session's working directory as the agent sees it; defaults to the command's cwd. */
  readonly sessionCwd?: string
  /** Load this ACP session instead of creating one. */
  readonly resumeSessionId?: string
  /** How long a cancelled prompt may take to stop by itself before the process group is killed. Default 5 s. */
  readonly cancelGrace?: Duration.DurationInput
  /** Crash restarts allowed per session; the next crash fails the session. Default 3. */
  readonly restartBudget?: number
  /** Most updates held while a cancel waits for the agent's answer (`HELD_MAX`, 5,000). */
  readonly heldMax?: number
  /** First crash-restart delay, doubled on each further restart. Default 1 s. */
  readonly restartBackoff?: Duration.DurationInput
  /** `auto-approve` answers permission requests at once with the first allowing option. Default `ask`. */
  readonly permissions?: "ask" | "auto-approve"
  /** The last `seq` this session reported before (when a new host takes a session over); numbering goes on from it. */
  readonly lastSeq?: number
  /**
   * Waited for once the agent's process has started and answered `initialize`, before its session is created: the
   * agent boots while its workspace is still made (ADR 0037). Its failure fails the start. Only the first start
   * waits; a restart does not.
   */
  readonly beforeSession?: Effect.Effect<void, AgentStartError>
  /** Called synchronously with every event, in `seq` order, from the first one on. */
  readonly onEvent?: (event: SessionEvent) => void
}

export type SessionStatus = "starting" | "idle" | "prompting" | "cancelling" | "restarting" | "failed" | "stopped"

export type CancelResult =
  | { readonly _tag: "NothingToCancel"; readonly message: string }
  | { readonly _tag: "Cancelled"; readonly forced: boolean; readonly stopMs: number }
  /**
   * The agent ended the turn on its own: its answer came before the cancel, or crossed it (an answer other than
   * `cancelled` to a prompt it was asked to cancel). The turn ends as the agent said, with all it said.
   */
  | { readonly _tag: "Ended"; readonly stopReason: StopReason }

/** One ACP session with its agent process; see `AcpSessionHost.start`. */
export interface AcpSession {
  readonly acpSessionId: () => string
  /** Process group id of the agent now running (its pid), if one is. */
  readonly pgid: () => number | undefined
  readonly status: SubscriptionRef.SubscriptionRef<SessionStatus>
  /** A stream of the events from the moment of subscribing, for as long as the scope; `onEvent` sees them all. */
  readonly subscribe: Effect.Effect<Stream.Stream<SessionEvent>, never, Scope.Scope>
  /**
   * Says a prompt is on its way (its command was taken, its record is still being saved): a cancel from now on
   * ends that turn cancelled, before or while the agent gets it. Its ticket goes to `prompt`.
   */
  readonly reserve: () => PromptTicket
  /**
   * Runs one turn; waits while the agent (re)starts. Succeeds with `cancelled` when the turn was cancelled, also
   * when the cancel came before the agent had the prompt (then the agent never gets it).
   */
  readonly prompt: (
    text: string,
    ticket?: PromptTicket
  ) => Effect.Effect<{ readonly stopReason: StopReason }, PromptError>
  readonly cancel: () => Effect.Effect<CancelResult>
  /** Answers a `permission-requested` event; false if no such request is pending. */
  readonly answerPermission: (requestId: string, optionId: string | "cancelled") => Effect.Effect<boolean>
  readonly stop: () => Effect.Effect<void>
}

/** A prompt on its way to the agent (`AcpSession.reserve`); a cancel that comes first marks it. */
export interface PromptTicket {
  cancelled: boolean
}

interface Turn {
  readonly incarnation: Incarnation
  readonly response: Promise<PromptResponse>
  /** when it began, in the kernel's clock ticks since boot (`bootTicks`); what the agent started since is the turn's */
  readonly since: number | undefined
  /** its answer once it came (set as it settles, before anything else can run): the agent's, or `failed` */
  settled: PromptResponse | "failed" | undefined
  cancelling: boolean
  /**
   * What the agent says while a cancel waits for its answer: shown if that answer says the agent ended the turn on
   * its own, dropped if it says the turn was cancelled.
   */
  held: Array<SessionEventBody> | undefined
  /** what came past `HELD_MAX` */
  heldOver: number
  /** how the turn ended, once a cancel has ended it */
  endedAs: StopReason
}

/** Events that end a turn: its tool calls end with it. */
const TURN_ENDS: ReadonlySet<SessionEventBody["type"]> = new Set([
  "turn-ended",
  "turn-failed",
  "cancelled",
  "crashed",
  "failed",
  "stopped"
])

const flushMacrotask = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/**
 * Most of what an agent says while a cancel waits for its answer that is held for it (`Turn.held`): an agent that
 * floods its output through the grace cannot grow the vm-agent without bound. What comes after is counted, not kept.
 */
const HELD_MAX = 5_000

const start = Effect.fn("AcpSessionHost.start")(function* (options: SessionHostOptions) {
  const scope = yield* Effect.scope
  const grace = Duration.decode(options.cancelGrace ?? "5 seconds")
  const budget = options.restartBudget ?? 3
  const heldMax = options.heldMax ?? HELD_MAX
  const backoff = Duration.decode(options.restartBackoff ?? "1 second")
  const pubsub = yield* PubSub.unbounded<SessionEvent>()
  const status = yield* SubscriptionRef.make<SessionStatus>("starting")
  const lock = yield* Effect.makeSemaphore(1)
  let seq = options.lastSeq ?? 0
  let current: Incarnation | undefined
  let acpSessionId = options.resumeSessionId
  let crashRestarts = 0
  let turn: Turn | undefined
  /** the prompt on its way while no turn runs yet: a cancel then marks it (issue 12) */
  let coming: PromptTicket | undefined
  let closing = false
  /** the clock tick in which the agent last became idle: what started up to then is no later turn's */
  let idleSince: number | undefined
  let beforeSession = options.beforeSession

  const idle = Effect.suspend(() => {
    idleSince = bootTicks()
    return SubscriptionRef.set(status, "idle")
  })
  /**
   * A turn's mark: a tick after the one in which the agent became idle, so that what an earlier turn (or the
   * agent's start) started in that tick is not this turn's. Waits for the next tick (10 ms) only when the prompt
   * comes in the same tick as the idle.
   */
  const turnMark = Effect.gen(function* () {
    let now = bootTicks()
    while (now !== undefined && idleSince !== undefined && now <= idleSince) {
      yield* Effect.sleep("2 millis")
      now = bootTicks()
    }
    return now
  })

  const publish = (body: SessionEventBody) => {
    seq += 1
    const event = { ...body, seq, at: Date.now() } as SessionEvent
    options.onEvent?.(event)
    // Unbounded: it always takes the event; no fiber per event (issue 12).
    pubsub.unsafeOffer(event)
  }
  /** the agent's tool calls that have not finished, by id */
  const openTools = new Set<string>()
  const emit = (body: SessionEventBody) => {
    if (body.type === "tool-call" || body.type === "tool-call-update") {
      if (Domain.toolCallFinished(body.status)) openTools.delete(body.toolCallId)
      else if (body.type === "tool-call") openTools.add(body.toolCallId)
    } else if (TURN_ENDS.has(body.type)) {
      // A turn that ends, however it ends (done, cancelled, failed, crashed), leaves nothing of it running: a tool
      // call the agent did not finish is said to be cancelled, as ACP asks of its client, instead of showing
      // "in progress" for ever.
      for (const toolCallId of openTools) {
        publish({
          type: "tool-call-update",
          toolCallId,
          title: null,
          status: "cancelled",
          content: [],
          rawOutput: null
        })
      }
      openTools.clear()
    }
    publish(body)
  }
  /** what the agent said while its turn's cancel waits for its answer: kept, up to `HELD_MAX` */
  const hold = (held: Turn, event: SessionEventBody) => {
    if (held.held === undefined) return
    if (held.held.length < heldMax) held.held.push(event)
    else held.heldOver += 1
  }
  const desk = new PermissionDesk(emit, options.permissions === "auto-approve" ? autoApprove : undefined)

  const launch = (load: boolean): Effect.Effect<Incarnation, AgentStartError> =>
    Effect.gen(function* () {
      const incarnation = yield* startIncarnation({
        command: options.command,
        spawn: options.spawn,
        sessionCwd: options.sessionCwd ?? options.command.cwd,
        loadSessionId: load ? acpSessionId : undefined,
        beforeSession,
        parent: scope,
        hooks: {
          onUpdate: (inc, update) => {
            if (!inc.muted) emit(eventOfUpdate(update))
            else if (turn?.incarnation === inc) hold(turn, eventOfUpdate(update))
          },
          onPermission: (inc, request) =>
            inc.muted
              ? Promise.resolve<RequestPermissionResponse>({ outcome: { outcome: "cancelled" } })
              : desk.ask(request),
          onGarbage: (inc, line) => {
            const event: SessionEventBody = { type: "agent-output-ignored", line: line.slice(0, 500) }
            if (!inc.muted) emit(event)
            else if (turn?.incarnation === inc) hold(turn, event)
          }
        }
      })
      acpSessionId = incarnation.acpSessionId
      current = incarnation
      beforeSession = undefined
      emit({ type: "agent-started", pid: incarnation.process.pid, acpSessionId, loaded: load })
      yield* Effect.forkIn(watch(incarnation), scope)
      return incarnation
    })

  const watch = (incarnation: Incarnation) =>
    Deferred.await(incarnation.process.exit).pipe(
      Effect.flatMap((exit) =>
        incarnation.expectedExit || closing ? Effect.void : lock.withPermits(1)(onCrash(incarnation, exit))
      )
    )

  const restartAfterCrash: Effect.Effect<void> = Effect.gen(function* () {
    while (true) {
      crashRestarts += 1
      if (crashRestarts > budget) {
        yield* SubscriptionRef.set(status, "failed")
        emit({ type: "failed", reason: `agent crashed ${crashRestarts} times; restart budget of ${budget} spent` })
        return
      }
      yield* SubscriptionRef.set(status, "restarting")
      yield* Effect.sleep(Duration.times(backoff, 2 ** (crashRestarts - 1)))
      const restarted = yield* Effect.either(launch(true))
      if (restarted._tag === "Right") {
        emit({ type: "restarted", reason: "crash", attempt: crashRestarts, contextLost: restarted.right.contextLost })
        yield* idle
        return
      }
      yield* Effect.logWarning("agent restart failed", restarted.left)
      emit({ type: "crashed", exitCode: null, signal: null, stderrTail: restarted.left.message })
    }
  })

  const onCrash = (incarnation: Incarnation, exit: AgentExit) =>
    Effect.gen(function* () {
      if (incarnation.expectedExit || closing || current !== incarnation) return
      incarnation.muted = true
      current = undefined
      emit({ type: "crashed", ...exit, stderrTail: incarnation.process.stderrTail() })
      desk.cancelAll()
      yield* Scope.close(incarnation.scope, Exit.void)
      yield* restartAfterCrash
    })

  const settled = status.changes.pipe(
    Stream.filter((s) => s !== "starting" && s !== "restarting" && s !== "cancelling"),
    Stream.runHead,
    Effect.map(Option.getOrThrow)
  )

  const reserve = (): PromptTicket => {
    coming = { cancelled: false }
    return coming
  }
  /** A turn cancelled before the agent had its prompt ends at once, and the agent never gets it. */
  const cancelledBeforeSent = (ticket: PromptTicket) => {
    if (coming === ticket) coming = undefined
    emit({ type: "cancelled", forced: false, stopMs: 0 })
    emit({ type: "turn-ended", stopReason: "cancelled" })
    return { stopReason: "cancelled" as const }
  }

  const prompt = Effect.fn("AcpSessionHost.prompt")(function* (text: string, reserved?: PromptTicket) {
    const ticket = reserved ?? reserve()
    yield* settled
    const incarnation = yield* lock
      .withPermits(1)(
        Effect.gen(function* () {
          const now = yield* SubscriptionRef.get(status)
          if (ticket.cancelled) return undefined
          if (now === "failed" || now === "stopped")
            return yield* new PromptRejected({ reason: now, message: `the session has ${now}` })
          if (now !== "idle" || !current)
            return yield* new PromptRejected({ reason: "busy", message: "a prompt is already running" })
          yield* SubscriptionRef.set(status, "prompting")
          // an agent kept after a cancel was muted until its next turn
          current.muted = false
          return current
        })
      )
      .pipe(
        Effect.tapError(() =>
          Effect.sync(() => {
            if (coming === ticket) coming = undefined
          })
        )
      )
    emit({ type: "prompt-started", text })
    if (incarnation === undefined) return cancelledBeforeSent(ticket)
    const since = yield* turnMark
    if (ticket.cancelled) {
      yield* idle
      return cancelledBeforeSent(ticket)
    }
    // from here to `turn = active` nothing yields: a cancel sees either the ticket or the turn
    const response = incarnation.connection.agent.request("session/prompt", {
      sessionId: incarnation.acpSessionId,
      prompt: [{ type: "text", text }]
    })
    const active: Turn = {
      incarnation,
      response,
      since,
      settled: undefined,
      cancelling: false,
      held: undefined,
      heldOver: 0,
      endedAs: "cancelled"
    }
    response.then(
      (answer) => {
        active.settled = answer
      },
      () => {
        active.settled = "failed"
      }
    )
    turn = active
    if (coming === ticket) coming = undefined
    const answer = yield* Effect.raceFirst(
      Effect.tryPromise(() => response).pipe(Effect.either),
      Deferred.await(incarnation.process.exit).pipe(Effect.as(undefined))
    )
    if (answer?._tag === "Left") {
      // A dying agent closes the connection, which rejects the request just before its exit event arrives.
      yield* Deferred.await(incarnation.process.exit).pipe(Effect.timeout("1 second"), Effect.ignore)
    }
    if (active.cancelling) {
      // The cancel holds the lock until the agent is back, and says how the turn ended.
      yield* lock.withPermits(1)(Effect.void)
      return { stopReason: active.endedAs }
    }
    const exited = yield* Deferred.poll(incarnation.process.exit)
    if (Option.isSome(exited)) {
      if (turn === active) turn = undefined
      const { exitCode, signal } = yield* exited.value
      if (incarnation.expectedExit) return yield* new PromptRejected({ reason: "stopped", message: "session stopped" })
      return yield* new AgentCrashed({ exitCode, signal, message: `agent exited with code ${exitCode} (${signal})` })
    }
    // Updates sent just before the answer may still be in flight through the SDK's handlers.
    yield* flushMacrotask
    return yield* lock.withPermits(1)(
      Effect.gen(function* () {
        if (active.cancelling) return { stopReason: active.endedAs }
        turn = undefined
        yield* idle
        if (answer === undefined || answer._tag === "Left") {
          const error = (answer?.left.error ?? {}) as {
            readonly message?: string
            readonly code?: number
            readonly data?: { readonly message?: unknown }
          }
          // JSON-RPC's message is generic ("Internal error"); agents put the provider's reason in data.message.
          const detail = typeof error.data?.message === "string" ? error.data.message : undefined
          const message = String(error.message ?? error) + (detail === undefined ? "" : `: ${detail.slice(0, 500)}`)
          emit({ type: "turn-failed", message })
          return yield* new AgentProtocolError({ message, code: error.code ?? 0 })
        }
        endTurn(answer.right)
        return { stopReason: answer.right.stopReason }
      })
    )
  })

  /** The turn's end as the agent answered it, with its token usage where the agent reports it (Claude Code, OpenCode). */
  const endTurn = (answer: PromptResponse) => {
    const usage = (answer as { readonly usage?: unknown }).usage
    emit({
      type: "turn-ended",
      stopReason: answer.stopReason,
      ...(typeof usage === "object" && usage !== null ? { usage } : {})
    })
  }

  const cancel = Effect.fn("AcpSessionHost.cancel")(function* () {
    // a prompt on its way, before its turn runs: it ends cancelled without reaching the agent
    if (turn === undefined && coming !== undefined && !coming.cancelled) {
      coming.cancelled = true
      return { _tag: "Cancelled", forced: false, stopMs: 0 } satisfies CancelResult
    }
    return yield* lock.withPermits(1)(
      Effect.gen(function* () {
        const active = turn
        if (!active || (yield* SubscriptionRef.get(status)) !== "prompting")
          return { _tag: "NothingToCancel", message: "No prompt in flight to cancel" } satisfies CancelResult
        // Its answer came before the cancel: the turn ended on its own, and its prompt ends it as the agent said.
        if (active.settled === "failed")
          return { _tag: "NothingToCancel", message: "The turn had already ended" } satisfies CancelResult
        if (active.settled !== undefined)
          return { _tag: "Ended", stopReason: active.settled.stopReason } satisfies CancelResult
        const startedAt = Date.now()
        const incarnation = active.incarnation
        active.cancelling = true
        incarnation.muted = true
        active.held = []
        incarnation.expectedExit = true
        yield* SubscriptionRef.set(status, "cancelling")
        // The cancel first, then its pending permission requests answered `cancelled`, as ACP orders them: an agent
        // that reads in order knows why it was refused, and answers its prompt `cancelled`.
        yield* Effect.tryPromise(() =>
          incarnation.connection.agent.notify("session/cancel", { sessionId: incarnation.acpSessionId })
        ).pipe(Effect.timeout("1 second"), Effect.ignore)
        desk.cancelAll()
        const stoppedInGrace = yield* Effect.raceFirst(
          Effect.tryPromise(() => active.response).pipe(Effect.option),
          Deferred.await(incarnation.process.exit).pipe(Effect.as(Option.none<PromptResponse>()))
        ).pipe(Effect.timeout(grace), Effect.option)
        // The agent answered the prompt in time and runs: it stays, with its ACP session and the conversation in it
        // (Gemini CLI could not load a conversation whose first turn was cancelled), and only what it started during
        // the turn (its tool commands) is killed. Otherwise, or if those do not go, the whole group goes and the agent
        // is started again with session/load.
        const answered = Option.isSome(stoppedInGrace) && Option.isSome(stoppedInGrace.value)
        // An answer other than `cancelled` crossed the cancel: the agent had ended the turn on its own (ACP asks an
        // agent to answer a prompt it cancelled with `cancelled`). The turn ends as it said, with what it said meanwhile.
        const own =
          answered && stoppedInGrace.value.value.stopReason !== "cancelled" ? stoppedInGrace.value.value : undefined
        // what it said just before its answer may still be on its way through the SDK's handlers
        if (own !== undefined) yield* flushMacrotask
        const held = active.held ?? []
        active.held = undefined
        /** the turn's end: cancelled, or as the agent ended it */
        const ended = (forced: boolean, stopMs: number) => {
          if (own === undefined) {
            emit({ type: "cancelled", forced, stopMs })
            emit({ type: "turn-ended", stopReason: "cancelled" })
            return
          }
          for (const event of held) emit(event)
          if (active.heldOver > 0) {
            const line = `${active.heldOver} more updates the agent wrote while its cancel waited were not kept`
            emit({ type: "agent-output-ignored", line })
          }
          endTurn(own)
          active.endedAs = own.stopReason
        }
        const result = (forced: boolean, stopMs: number): CancelResult =>
          own === undefined ? { _tag: "Cancelled", forced, stopMs } : { _tag: "Ended", stopReason: own.stopReason }
        // What the turn started is killed either way: a cancel leaves nothing of the turn running.
        if (answered && active.since !== undefined && Option.isNone(yield* Deferred.poll(incarnation.process.exit))) {
          yield* incarnation.process.killSince(active.since, "SIGKILL")
          const toolsGone = yield* incarnation.process.awaitGoneSince(active.since, "2 seconds")
          incarnation.expectedExit = false
          if (toolsGone && Option.isNone(yield* Deferred.poll(incarnation.process.exit))) {
            turn = undefined
            const stopMs = Date.now() - startedAt
            ended(false, stopMs)
            yield* idle
            return result(false, stopMs)
          }
          incarnation.expectedExit = true
        }
        yield* incarnation.process.killGroup("SIGKILL")
        yield* Deferred.await(incarnation.process.exit).pipe(Effect.timeout("5 seconds"), Effect.ignore)
        yield* incarnation.process.awaitGroupGone("2 seconds")
        const stopMs = Date.now() - startedAt
        yield* Scope.close(incarnation.scope, Exit.void)
        current = undefined
        turn = undefined
        // forced: the grace ran out (an agent that answered, with an error or by exiting, stopped by itself)
        const forced = Option.isNone(stoppedInGrace)
        ended(forced, stopMs)
        yield* SubscriptionRef.set(status, "restarting")
        // An agent that answers session/load with an error (Gemini CLI keeps no conversation on disk until a turn
        // has completed, so a first turn cancelled leaves nothing to load) gets a new session: the conversation
        // before the cancel is lost and the restart says so, but the session goes on.
        let lost = false
        const restarted = yield* Effect.either(
          launch(true).pipe(
            Effect.catchIf(
              (e) => e.reason === "session" && e.refused === true,
              () =>
                Effect.sync(() => {
                  lost = true
                }).pipe(Effect.zipRight(launch(false)))
            )
          )
        )
        if (restarted._tag === "Right") {
          emit({ type: "restarted", reason: "cancel", attempt: 0, contextLost: lost || restarted.right.contextLost })
          yield* idle
        } else {
          emit({ type: "crashed", exitCode: null, signal: null, stderrTail: restarted.left.message })
          yield* restartAfterCrash
        }
        return result(forced, stopMs)
      })
    )
  })

  const stop = Effect.fn("AcpSessionHost.stop")(function* () {
    yield* lock.withPermits(1)(
      Effect.gen(function* () {
        if ((yield* SubscriptionRef.get(status)) === "stopped") return
        const incarnation = current
        current = undefined
        if (incarnation) {
          incarnation.expectedExit = true
          incarnation.muted = true
          yield* Scope.close(incarnation.scope, Exit.void)
        }
        desk.cancelAll()
        yield* SubscriptionRef.set(status, "stopped")
        emit({ type: "stopped" })
      })
    )
  })

  yield* Effect.addFinalizer(() => stop())
  yield* launch(options.resumeSessionId !== undefined).pipe(Effect.tap(() => idle))
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      closing = true
    })
  )

  return {
    acpSessionId: () => acpSessionId ?? "",
    pgid: () => current?.process.pid,
    status,
    subscribe: Effect.map(PubSub.subscribe(pubsub), (queue) => Stream.fromQueue(queue)),
    reserve,
    prompt,
    cancel,
    answerPermission: (requestId, optionId) => Effect.sync(() => desk.answer(requestId, optionId)),
    stop
  } satisfies AcpSession
})

/**
 * Hosts ACP sessions: each runs its agent in its own process group, reports what the agent does as events with a
 * per-session `seq`, restarts it after a crash (within a budget) and after a cancel (outside the budget), and
 * reloads the ACP session so the conversation goes on. Closing the scope kills the process group.
 * Defaults come from `SAM_ACP_CANCEL_GRACE`, `SAM_ACP_MAX_RESTARTS` and `SAM_ACP_RESTART_BACKOFF`.
 */
export class AcpSessionHost extends Effect.Service<AcpSessionHost>()("sam/AcpSessionHost", {
  effect: Effect.gen(function* () {
    const defaults = yield* Config.all({
      cancelGrace: Config.duration("SAM_ACP_CANCEL_GRACE").pipe(Config.withDefault(Duration.seconds(5))),
      restartBudget: Config.integer("SAM_ACP_MAX_RESTARTS").pipe(Config.withDefault(3)),
      restartBackoff: Config.duration("SAM_ACP_RESTART_BACKOFF").pipe(Config.withDefault(Duration.seconds(1)))
    })
    return { start: (options: SessionHostOptions) => start({ ...defaults, ...options }) }
  })
}) {}
