import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import type { Stream as AcpStream, AnyMessage } from "@agentclientprotocol/sdk"
import { Deferred, type Duration, Effect, Exit, Schedule, type Scope } from "effect"
import { AgentStartError } from "./AcpErrors.js"
import type { HarnessCommand } from "./HarnessCommand.js"

export interface AgentExit {
  readonly exitCode: number | null
  readonly signal: string | null
}

/** A running agent process, leader of its own process group. */
export interface AgentProcess {
  readonly pid: number
  /** The ACP message stream over the agent's stdio; stdout lines that are not JSON objects never enter it. */
  readonly stream: AcpStream
  readonly exit: Deferred.Deferred<AgentExit>
  readonly stderrTail: () => string
  /** Sends `signal` to the whole process group; true if the group still existed. */
  readonly killGroup: (signal: NodeJS.Signals) => boolean
  /** Waits until no process of the group is left, up to `timeout`; true if it is gone. */
  readonly awaitGroupGone: (timeout: Duration.DurationInput) => Effect.Effect<boolean>
}

const MAX_LINE_BYTES = 16 * 1024 * 1024
const STDERR_TAIL_BYTES = 4096

const signalable = (pgid: number): boolean => {
  try {
    process.kill(-pgid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ESRCH"
  }
}

/** Processes of group `pgid` that are not zombies, from /proc; undefined where there is no /proc. */
const liveMembers = (pgid: number): number | undefined => {
  let pids: Array<string>
  try {
    pids = Fs.readdirSync("/proc").filter((name) => /^\d+$/.test(name))
  } catch {
    return undefined
  }
  let live = 0
  for (const pid of pids) {
    try {
      const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      if (Number(pgrp) === pgid && state !== "Z" && state !== "X") live += 1
    } catch {
      // The process ended while we looked.
    }
  }
  return live
}

/**
 * True while a process of group `pgid` can still run. Killed orphans stay zombies until init reaps them (which
 * takes seconds under some inits) and can do nothing, so on Linux they do not count.
 */
export const groupAlive = (pgid: number): boolean => signalable(pgid) && (liveMembers(pgid) ?? 1) > 0

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

const start = (command: HarnessCommand, onGarbage: (line: string) => void) =>
  Effect.async<AgentProcess, AgentStartError>((resume) => {
    const [file, ...args] = command.argv
    const child = spawn(file, args, {
      cwd: command.cwd,
      env: { ...process.env, ...command.env },
      detached: true,
      stdio: ["pipe", "pipe", "pipe"]
    })
    const exit = Deferred.unsafeMake<AgentExit>(undefined as never)
    let stderr = ""
    let controller: ReadableStreamDefaultController<AnyMessage> | undefined
    // The SDK cancels the readable when the connection closes; later lines and the end are then dropped.
    let open = true
    const readable = new ReadableStream<AnyMessage>({
      start: (c) => {
        controller = c
      },
      cancel: () => {
        open = false
      }
    })
    const framer = lineFramer((message) => open && controller?.enqueue(message), onGarbage)
    child.stdout.setEncoding("utf8").on("data", framer.push)
    child.stdout.on("end", () => {
      framer.flush()
      if (open) controller?.close()
      open = false
    })
    child.stderr.setEncoding("utf8").on("data", (text: string) => {
      stderr = (stderr + text).slice(-STDERR_TAIL_BYTES)
    })
    // Writes to a dead agent fail through the write callback; the stream error itself is expected then.
    child.stdin.on("error", () => undefined)
    const writable = new WritableStream<AnyMessage>({
      write: (message) =>
        new Promise<void>((resolve, reject) => {
          if (!child.stdin.writable) return reject(new Error("agent stdin is closed"))
          child.stdin.write(`${JSON.stringify(message)}\n`, (error) => (error ? reject(error) : resolve()))
        })
    })
    child.on("exit", (exitCode, signal) => Deferred.unsafeDone(exit, Exit.succeed({ exitCode, signal })))
    child.once("error", (error) => {
      resume(Effect.fail(new AgentStartError({ reason: "spawn", message: `${file}: ${error.message}` })))
    })
    child.once("spawn", () => {
      const pid = child.pid!
      resume(
        Effect.succeed({
          pid,
          stream: { readable, writable },
          exit,
          stderrTail: () => stderr,
          killGroup: (signal) => {
            try {
              process.kill(-pid, signal)
              return true
            } catch {
              return false
            }
          },
          awaitGroupGone: (timeout) =>
            Effect.suspend(() => (groupAlive(pid) ? Effect.fail("alive" as const) : Effect.void)).pipe(
              Effect.retry(Schedule.spaced("10 millis")),
              Effect.timeout(timeout),
              Effect.match({ onFailure: () => false, onSuccess: () => true })
            )
        })
      )
    })
  })

/**
 * Starts `command` as the leader of a new process group. Closing the scope kills the whole group (SIGKILL), so
 * shell children and their orphans die with the agent.
 */
export const spawnAgent = (command: HarnessCommand, onGarbage: (line: string) => void) =>
  Effect.acquireRelease(start(command, onGarbage), (agent) =>
    Effect.gen(function* () {
      agent.killGroup("SIGKILL")
      yield* Deferred.await(agent.exit).pipe(Effect.timeout("5 seconds"), Effect.ignore)
      yield* agent.awaitGroupGone("2 seconds")
    })
  ) satisfies Effect.Effect<AgentProcess, AgentStartError, Scope.Scope>
