import { spawn } from "node:child_process"
import type { Readable, Writable } from "node:stream"
import type { Stream as AcpStream, AnyMessage } from "@agentclientprotocol/sdk"
import { Deferred, type Duration, Effect, Exit, FiberId, Schedule, type Scope } from "effect"
import { baseEnv } from "../runtime/internal/agentEnv.js"
import { groupAlive, signalGroup, signalStartedSince, startedSince } from "../runtime/internal/processGroup.js"
import { AgentStartError } from "./AcpErrors.js"
import type { HarnessCommand } from "./HarnessCommand.js"

export interface AgentExit {
  readonly exitCode: number | null
  readonly signal: string | null
}

/** A running agent process, leader of its own process group (on the host, or in a workspace container). */
export interface AgentProcess {
  /** its pid, which is its process group's id, where it runs */
  readonly pid: number
  /** The ACP message stream over the agent's stdio; stdout lines that are not JSON objects never enter it. */
  readonly stream: AcpStream
  readonly exit: Deferred.Deferred<AgentExit>
  readonly stderrTail: () => string
  /** Sends `signal` to the whole process group, also after the agent itself ended. */
  readonly killGroup: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** Waits until no process of the group is left, up to `timeout`; true if it is gone. */
  readonly awaitGroupGone: (timeout: Duration.DurationInput) => Effect.Effect<boolean>
  /**
   * Sends `signal` to the processes of the group (on the host also their descendants that left it) that started at
   * or after `since` (`bootTicks`), not the agent: the tool commands of a turn that began then.
   */
  readonly killSince: (since: number, signal: NodeJS.Signals) => Effect.Effect<void>
  /** Waits until none of those is left, up to `timeout`; true if they are gone. */
  readonly awaitGoneSince: (since: number, timeout: Duration.DurationInput) => Effect.Effect<boolean>
}

const MAX_LINE_BYTES = 16 * 1024 * 1024
const STDERR_TAIL_BYTES = 4096

export { groupAlive }

const lineFramer = (onMessage: (message: AnyMessage) => void, onGarbage: (line: string) => void) => {
  let buffered = ""
  const line = (raw: string) => {
    const text = raw.trim()
    if (text.length === 0) return
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      return onGarbage(text)
    }
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) onMessage(parsed as AnyMessage)
    else onGarbage(text)
  }
  return {
    push: (chunk: string) => {
      buffered += chunk
      const lines = buffered.split("\n")
      buffered = lines.pop() ?? ""
      for (const each of lines) line(each)
      if (buffered.length > MAX_LINE_BYTES) {
        onGarbage(`${buffered.slice(0, 200)}… (line over ${MAX_LINE_BYTES} bytes dropped)`)
        buffered = ""
      }
    },
    flush: () => {
      line(buffered)
      buffered = ""
    }
  }
}

/** What an agent writes on stdout besides its ACP stream (`agentStdio`). */
export interface AgentOutput {
  /** a line that is not a JSON object */
  readonly onGarbage: (line: string) => void
  /** the params of a `session/update` notification taken past the SDK, not yet parsed */
  readonly onUpdate?: (params: unknown) => void
}

/** A JSON-RPC notification of `session/update`: an agent's streamed output. */
const isSessionUpdate = (message: AnyMessage) =>
  (message as { readonly method?: unknown }).method === "session/update" && !("id" in message)

/**
 * The ACP stream over an agent's stdio, and the tail of its stderr. Lines of stdout that are not JSON objects go
 * to `onGarbage`; after the SDK cancelled the readable (the connection closed), later lines and the end are dropped.
 *
 * With `onUpdate`, a `session/update` notification goes to it at once instead of through the SDK's queue, reader and
 * chain of handlers (with the parse by kind of `UpdateSchema.ts`, the reader spends 0.69 of the CPU per streamed line
 * it spent through the SDK: `test/bench/agent-lines.ts`, issue 12). Only while nothing waits for the SDK: the lines
 * of a read of stdout go to `onUpdate` until one of them is another message (a response, a permission request), which
 * goes to the SDK with every line after it in that read. The SDK takes what it was given before the next read of
 * stdout (its reader and handlers run on promises), so no line overtakes another.
 */
export const agentStdio = (
  io: { readonly stdin: Writable; readonly stdout: Readable; readonly stderr: Readable },
  output: AgentOutput
) => {
  let stderr = ""
  let controller: ReadableStreamDefaultController<AnyMessage> | undefined
  let open = true
  // nothing is held for a reader that has not asked (its desired size is 0 when it has taken everything)
  const readable = new ReadableStream<AnyMessage>(
    {
      start: (c) => {
        controller = c
      },
      cancel: () => {
        open = false
      }
    },
    { highWaterMark: 0 }
  )
  /** a line of this read of stdout went to the SDK: the read's later lines go there too */
  let handedOver = false
  const { onUpdate } = output
  const framer = lineFramer((message) => {
    if (!open || controller === undefined) return
    if (!handedOver && onUpdate !== undefined && isSessionUpdate(message) && controller.desiredSize === 0) {
      onUpdate((message as { readonly params?: unknown }).params)
      return
    }
    handedOver = true
    controller.enqueue(message)
  }, output.onGarbage)
  io.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    handedOver = false
    framer.push(chunk)
  })
  io.stdout.on("end", () => {
    framer.flush()
    if (open) controller?.close()
    open = false
  })
  io.stderr.setEncoding("utf8").on("data", (text: string) => {
    stderr = (stderr + text).slice(-STDERR_TAIL_BYTES)
  })
  // Writes to a dead agent fail through the write callback; the stream error itself is expected then.
  io.stdin.on("error", () => undefined)
  const writable = new WritableStream<AnyMessage>({
    write: (message) =>
      new Promise<void>((resolve, reject) => {
        if (!io.stdin.writable) return reject(new Error("agent stdin is closed"))
        io.stdin.write(`${JSON.stringify(message)}\n`, (error) => (error ? reject(error) : resolve()))
      })
  })
  return { stream: { readable, writable } satisfies AcpStream, stderrTail: () => stderr }
}

/** Polls `alive` until it is false, up to `timeout`; true if the group is gone. */
export const pollGroupGone = (
  alive: Effect.Effect<boolean>,
  timeout: Duration.DurationInput,
  every: Duration.DurationInput = "10 millis"
) =>
  alive.pipe(
    Effect.flatMap((yes) => (yes ? Effect.fail("alive" as const) : Effect.void)),
    Effect.retry(Schedule.spaced(every)),
    Effect.timeout(timeout),
    Effect.match({ onFailure: () => false, onSuccess: () => true })
  )

const start = (command: HarnessCommand, output: AgentOutput) =>
  Effect.async<AgentProcess, AgentStartError>((resume) => {
    const [file, ...args] = command.argv
    const child = spawn(file, args, {
      cwd: command.cwd,
      // never the vm-agent's own environment: agents are untrusted code (ADR 0014)
      env: { ...baseEnv(process.env.HOME ?? "/"), ...command.env },
      detached: true,
      stdio: ["pipe", "pipe", "pipe"]
    })
    const exit = Deferred.unsafeMake<AgentExit>(FiberId.none)
    const stdio = agentStdio(child, output)
    child.on("exit", (exitCode, signal) => Deferred.unsafeDone(exit, Exit.succeed({ exitCode, signal })))
    child.once("error", (error) => {
      resume(Effect.fail(new AgentStartError({ reason: "spawn", message: `${file}: ${error.message}` })))
    })
    child.once("spawn", () => {
      const pid = child.pid!
      resume(
        Effect.succeed({
          pid,
          ...stdio,
          exit,
          killGroup: (signal) => Effect.sync(() => void signalGroup(pid, signal)),
          awaitGroupGone: (timeout) =>
            pollGroupGone(
              Effect.sync(() => groupAlive(pid)),
              timeout
            ),
          killSince: (since, signal) => Effect.sync(() => signalStartedSince(pid, since, signal)),
          awaitGoneSince: (since, timeout) =>
            pollGroupGone(
              Effect.sync(() => startedSince(pid, since).length > 0),
              timeout
            )
        })
      )
    })
  })

/** Starts an agent with `command` in a process group of its own; closing the scope kills the group. */
export type AgentSpawner = (
  command: HarnessCommand,
  output: AgentOutput
) => Effect.Effect<AgentProcess, AgentStartError, Scope.Scope>

/** What a spawner does when its scope closes: SIGKILL the whole group and wait until it is gone. */
export const releaseAgent = (agent: AgentProcess) =>
  Effect.gen(function* () {
    yield* agent.killGroup("SIGKILL")
    yield* Deferred.await(agent.exit).pipe(Effect.timeout("5 seconds"), Effect.ignore)
    yield* agent.awaitGroupGone("2 seconds")
  })

/**
 * Starts `command` on the host as the leader of a new process group, as the vm-agent's user with only PATH, LANG,
 * HOME and the command's env. Closing the scope kills the whole group (SIGKILL), so shell children and their
 * orphans die with the agent. The vm-agent runs agents in workspaces with `workspaceSpawner` instead.
 */
export const spawnAgent: AgentSpawner = (command, output) => Effect.acquireRelease(start(command, output), releaseAgent)
