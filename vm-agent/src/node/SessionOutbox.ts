import { Domain } from "@sam/bus"
import { Cause, Effect, Fiber, Runtime } from "effect"
import type { SessionEvent } from "../acp/SessionEvent.js"

const { NodeProtocol } = Domain

/** One event of a session's report, as the bus defines it: the vm-agent's events must fit it as they are. */
export type AgentEventReport = { readonly nodeSeq: number; readonly event: Domain.SessionEventBody }

/** An event made ready to report: its place, its turn, its size, and what must follow once it is reported. */
export interface PreparedEvent {
  readonly nodeSeq: number
  readonly epoch: number
  readonly body: Domain.SessionEventBody
  readonly bytes: number
  readonly after: Effect.Effect<void> | undefined
}

/** Most items taken at once, so a run stays well inside one report's limits. */
const TAKE = 256

export interface SessionOutbox {
  /** an event the agent wrote: reported in a run with those that wait beside it */
  readonly event: (event: SessionEvent) => void
  /** another report (an activity), in its place among the events */
  readonly step: (effect: Effect.Effect<void>) => void
  /** reporting begins (once the agent has started: what it said meanwhile waits until then) */
  readonly begin: () => void
  /** nothing more is reported; a step under way is interrupted (the session's scope closes) */
  readonly close: Effect.Effect<void>
  readonly isOpen: () => boolean
}

/**
 * A session's reports, in the order they happened: the events the agent wrote while the last report was being
 * published go out as one run (issue 12), so a busy agent costs a report per run, not per event, and a quiet one
 * waits for nothing. Outside any fiber: this is the path of every event an agent writes, and a fiber's steps (a
 * queue's take, a generator's turns, a schedule per publish) cost the vm-agent more than the publish. The other
 * reports are effects, run in their place on `runtime` (the session's: its log settings, correlation and span).
 */
export const makeSessionOutbox = (options: {
  readonly runtime: Runtime.Runtime<never>
  /** true once the task's result is reported: the agent's later events are not sent */
  readonly skipEvents: () => boolean
  readonly prepare: (event: SessionEvent) => PreparedEvent
  /** publish a run of events of one turn; never rejects (it retries, then logs) */
  readonly publish: (events: Array<AgentEventReport>, epoch: number) => Promise<void>
}): SessionOutbox => {
  const waiting: Array<SessionEvent | Effect.Effect<void>> = []
  /** true while a pump runs, or until `begin` */
  let pumping = true
  let open = true
  let running: Fiber.RuntimeFiber<void> | undefined
  const fork = Runtime.runFork(options.runtime)
  const safe = (effect: Effect.Effect<void>) =>
    Effect.catchAllCause(effect, (cause) =>
      Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError(`session report failed: ${Cause.pretty(cause)}`)
    )
  const run = (effect: Effect.Effect<void>) =>
    new Promise<void>((resolve) => {
      const fiber = fork(safe(effect))
      running = fiber
      fiber.addObserver(() => {
        if (running === fiber) running = undefined
        resolve()
      })
    })

  const report = async (items: ReadonlyArray<SessionEvent | Effect.Effect<void>>) => {
    let events: Array<AgentEventReport> = []
    let epoch = 0
    let bytes = 0
    const flush = () => {
      if (events.length === 0) return undefined
      const run = events
      events = []
      bytes = 0
      return options.publish(run, epoch)
    }
    for (const item of items) {
      if (!open) return
      if (Effect.isEffect(item)) {
        await flush()
        await run(item)
        continue
      }
      if (options.skipEvents()) continue
      const event = options.prepare(item)
      const fits =
        event.epoch === epoch &&
        events.length < NodeProtocol.MAX_EVENTS_PER_REPORT &&
        bytes + event.bytes < NodeProtocol.MAX_EVENTS_REPORT_BYTES
      if (!fits) await flush()
      epoch = event.epoch
      events.push({ nodeSeq: event.nodeSeq, event: event.body })
      bytes += event.bytes
      if (event.after !== undefined) {
        await flush()
        await run(event.after)
      }
    }
    await flush()
  }
  const pump = async () => {
    while (open && waiting.length > 0) {
      try {
        await report(waiting.splice(0, TAKE))
      } catch (error) {
        // a bug: what was taken is lost, as a fiber's defect would lose it; the session goes on
        await run(Effect.logError("session report failed", error))
      }
    }
    pumping = false
  }
  const offer = (item: SessionEvent | Effect.Effect<void>) => {
    waiting.push(item)
    if (pumping || !open) return
    pumping = true
    // from the next microtask: the events the agent's read delivered together go out together
    queueMicrotask(() => void pump())
  }
  return {
    begin: () => {
      if (open && waiting.length > 0) void pump()
      else pumping = false
    },
    event: offer,
    step: offer,
    isOpen: () => open,
    close: Effect.suspend(() => {
      open = false
      waiting.length = 0
      return running === undefined ? Effect.void : Fiber.interrupt(running)
    })
  }
}
