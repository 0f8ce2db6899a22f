import {
  type ClientConnection,
  client,
  PROTOCOL_VERSION,
  type RequestPermissionRequest,
  type RequestPermissionResponse,
  type SessionUpdate
} from "@agentclientprotocol/sdk"
import { Deferred, Duration, Effect, Exit, Scope } from "effect"
import { AgentStartError } from "../AcpErrors.js"
import { type AgentProcess, type AgentSpawner, spawnAgent } from "../AgentProcess.js"
import type { HarnessCommand } from "../HarnessCommand.js"
import { parseSessionNotification } from "../UpdateSchema.js"

export interface IncarnationHooks {
  readonly onUpdate: (incarnation: Incarnation, update: SessionUpdate) => void
  readonly onPermission: (
    incarnation: Incarnation,
    request: RequestPermissionRequest
  ) => Promise<RequestPermissionResponse>
  readonly onGarbage: (incarnation: Incarnation, line: string) => void
}

/** One run of the agent process with its ACP connection and session. */
export interface Incarnation {
  readonly process: AgentProcess
  readonly connection: ClientConnection
  readonly acpSessionId: string
  /** The agent could not load the session, so it started a new one and forgot the conversation. */
  readonly contextLost: boolean
  readonly scope: Scope.CloseableScope
  /** Nothing it says is reported any more (after a cancel or a crash, during session/load replay). */
  muted: boolean
  /** Its exit is ours (cancel, stop), not a crash. */
  expectedExit: boolean
}

const STARTUP_TIMEOUT = Duration.seconds(30)

/**
 * Starts the agent in a scope forked from `parent`, initializes ACP and creates (or, with `loadSessionId`, loads)
 * the session. On failure everything it started is released before the error is returned.
 */
export const startIncarnation = (options: {
  readonly command: HarnessCommand
  /** how the agent process is started; default: on the host */
  readonly spawn?: AgentSpawner | undefined
  readonly sessionCwd: string
  readonly loadSessionId: string | undefined
  /** waited for after the agent initialized, before its session is created or loaded (see `SessionHostOptions`) */
  readonly beforeSession?: Effect.Effect<void, AgentStartError> | undefined
  readonly hooks: IncarnationHooks
  readonly parent: Scope.Scope
}) =>
  Effect.gen(function* () {
    const scope = yield* Scope.fork(options.parent, { _tag: "Sequential" })
    const self: { current?: Incarnation } = {}
    const pending: Array<string> = []
    const onGarbage = (line: string) =>
      self.current ? options.hooks.onGarbage(self.current, line) : pending.push(line)
    // The agent's streamed updates, most of what it says, come past the SDK (`agentStdio`), parsed with its schema
    // here as the SDK parses those it still takes. One that is not ACP is dropped, as the SDK drops it; a handler
    // that throws is logged, as the SDK logs it, and never reaches the stream that read the line.
    /** An update, parsed, to the incarnation's hook: from either path, dropped before the incarnation exists. */
    const deliver = (update: SessionUpdate) => {
      if (self.current) options.hooks.onUpdate(self.current, update)
    }
    const onUpdate = (params: unknown) => {
      const parsed = parseSessionNotification(params)
      if (!parsed.ok)
        return void console.error("Error handling notification", { method: "session/update", message: parsed.reason })
      try {
        deliver(parsed.value.update)
      } catch (error) {
        console.error("Error handling notification", { method: "session/update", message: String(error) })
      }
    }
    const started = Effect.gen(function* () {
      const agentProcess = yield* (options.spawn ?? spawnAgent)(options.command, { onGarbage, onUpdate }).pipe(
        Scope.extend(scope)
      )
      const connection = client({ name: "sam-vm-agent" })
        .onNotification("session/update", ({ params }) => deliver(params.update))
        .onRequest("session/request_permission", ({ params }) =>
          self.current ? options.hooks.onPermission(self.current, params) : { outcome: { outcome: "cancelled" } }
        )
        .connect(agentProcess.stream)
      yield* Scope.addFinalizer(
        scope,
        Effect.sync(() => connection.close())
      )

      const rpc = <A>(step: "initialize" | "session", run: () => Promise<A>) =>
        Effect.tryPromise({
          try: run,
          catch: (error) => {
            // JSON-RPC's message is generic ("Internal error"); agents put their reason in data (.message, .details)
            const data = (error as { readonly data?: unknown })?.data
            const fields = (data ?? {}) as { readonly message?: unknown; readonly details?: unknown }
            const detail =
              typeof data === "string"
                ? data
                : typeof fields.message === "string"
                  ? fields.message
                  : typeof fields.details === "string"
                    ? fields.details
                    : undefined
            // an agent that died meanwhile closes the connection first: what it said on the way out says why
            const said = agentProcess.stderrTail().trim()
            const message = `${String((error as Error)?.message ?? error)}${said === "" ? "" : `: ${said}`}`
            return new AgentStartError({
              reason: step,
              message: detail === undefined ? message : `${message}: ${detail.slice(0, 500)}`,
              refused: typeof (error as { readonly code?: unknown })?.code === "number"
            })
          }
        }).pipe(
          Effect.raceFirst(
            Deferred.await(agentProcess.exit).pipe(
              Effect.flatMap((exit) =>
                Effect.fail(
                  new AgentStartError({
                    reason: step,
                    message: `agent exited (code ${exit.exitCode}, signal ${exit.signal}) during ${step}: ${agentProcess.stderrTail()}`
                  })
                )
              )
            )
          ),
          Effect.timeoutFail({
            duration: STARTUP_TIMEOUT,
            onTimeout: () => new AgentStartError({ reason: step, message: `no answer to ${step} in time` })
          })
        )

      const init = yield* rpc("initialize", () =>
        connection.agent.request("initialize", {
          protocolVersion: PROTOCOL_VERSION,
          clientCapabilities: {},
          clientInfo: { name: "sam-vm-agent", version: "0.1.0" }
        })
      )
      const canLoad = init.agentCapabilities?.loadSession === true
      const authMethod = options.command.authMethod
      if (authMethod !== undefined) {
        yield* rpc("initialize", () => connection.agent.request("authenticate", { methodId: authMethod }))
      }
      if (options.beforeSession !== undefined) {
        yield* options.beforeSession.pipe(
          Effect.raceFirst(
            Deferred.await(agentProcess.exit).pipe(
              Effect.flatMap((exit) =>
                Effect.fail(
                  new AgentStartError({
                    reason: "session",
                    message: `agent exited (code ${exit.exitCode}, signal ${exit.signal}) before its session: ${agentProcess.stderrTail()}`
                  })
                )
              )
            )
          )
        )
      }
      // Until the incarnation exists, nothing the agent says is reported: session/load replays the conversation,
      // which is already in the transcript.
      let acpSessionId: string
      if (options.loadSessionId !== undefined && canLoad) {
        acpSessionId = options.loadSessionId
        yield* rpc("session", () =>
          connection.agent.request("session/load", { sessionId: acpSessionId, cwd: options.sessionCwd, mcpServers: [] })
        )
      } else {
        const created = yield* rpc("session", () =>
          connection.agent.request("session/new", { cwd: options.sessionCwd, mcpServers: [] })
        )
        acpSessionId = created.sessionId
      }
      const sessionMode = options.command.sessionMode
      if (sessionMode !== undefined) {
        yield* rpc("session", () =>
          connection.agent.request("session/set_mode", { sessionId: acpSessionId, modeId: sessionMode })
        )
      }
      const incarnation: Incarnation = {
        process: agentProcess,
        connection,
        acpSessionId,
        contextLost: options.loadSessionId !== undefined && !canLoad,
        scope,
        muted: true,
        expectedExit: false
      }
      self.current = incarnation
      for (const line of pending.splice(0)) options.hooks.onGarbage(incarnation, line)
      // Replayed updates may still be queued behind the answer; they drain while muted.
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      incarnation.muted = false
      return incarnation
    })
    return yield* started.pipe(
      Effect.onError(() =>
        Effect.gen(function* () {
          yield* Scope.close(scope, Exit.void)
        })
      )
    )
  })
