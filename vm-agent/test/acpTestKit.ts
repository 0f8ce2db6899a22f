import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Domain } from "@sam/bus"
import { Effect, Schedule, type Scope } from "effect"
import { tracked } from "../../test/src/TempDirs.js"
import { type AcpSession, AcpSessionHost, type SessionHostOptions } from "../src/acp/AcpSessionHost.js"
import type { SessionEvent } from "../src/acp/SessionEvent.js"
import { demoAgentCommand } from "../src/demo/DemoAgentCommand.js"

export interface HostFixture {
  readonly session: AcpSession
  readonly events: Array<SessionEvent>
  readonly dir: string
}

export const tempDir = () => tracked(Fs.mkdtempSync(Path.join(Os.tmpdir(), "sam-acp-")))

/** Fails unless every event is one the control plane takes in a report (the bus's `SessionEventBody`, ≤ 256 kB). */
export const expectReportable = (events: ReadonlyArray<SessionEvent>) => {
  for (const { seq, at: _at, ...body } of events) {
    const parsed = Domain.NodeProtocol.SessionEvent.body.shape.event.safeParse(body)
    if (!parsed.success) throw new Error(`event ${seq} (${body.type}) breaks the contract: ${parsed.error.message}`)
  }
}

/**
 * Runs `body` against a session host driving the real demo agent in a fresh directory; afterwards every event the
 * host emitted must be one the bus accepts.
 */
export const withDemoHost = <A, E>(
  body: (fixture: HostFixture) => Effect.Effect<A, E, Scope.Scope>,
  options: Partial<SessionHostOptions> & { readonly dir?: string } = {}
): Promise<A> =>
  Effect.gen(function* () {
    const host = yield* AcpSessionHost
    const dir = options.dir ?? tempDir()
    const events: Array<SessionEvent> = []
    const session = yield* host.start({
      command: demoAgentCommand({ cwd: dir }),
      cancelGrace: "2 seconds",
      restartBackoff: "50 millis",
      ...options,
      onEvent: (event) => {
        events.push(event)
        options.onEvent?.(event)
      }
    })
    const result = yield* body({ session, events, dir })
    expectReportable(events)
    return result
  }).pipe(Effect.scoped, Effect.provide(AcpSessionHost.Default), Effect.runPromise)

/** Polls `condition` until it holds, failing after `timeoutMs`. */
export const waitUntil = (what: string, condition: () => boolean, timeoutMs = 10_000) =>
  Effect.suspend(() => (condition() ? Effect.void : Effect.fail("not yet"))).pipe(
    Effect.retry(Schedule.spaced("20 millis")),
    Effect.timeoutFail({ duration: timeoutMs, onTimeout: () => new Error(`timed out waiting for ${what}`) })
  )

export { groupAlive } from "../src/acp/AgentProcess.js"

/** `kill(-pgid, 0)` fails with ESRCH only once init has reaped every zombie of the group. */
export const groupSignalable = (pgid: number): boolean => {
  try {
    process.kill(-pgid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ESRCH"
  }
}

export const textOf = (events: ReadonlyArray<SessionEvent>): string =>
  events.flatMap((event) => (event.type === "text" ? [event.text] : [])).join("")

/** The text a tool call streamed (a shell's output). */
export const toolOutputOf = (events: ReadonlyArray<SessionEvent>): string =>
  events
    .flatMap((event) => (event.type === "tool-call-update" ? event.content : []))
    .flatMap((content) => (content.type === "content" && content.content.type === "text" ? [content.content.text] : []))
    .join("")
