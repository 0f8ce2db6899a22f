import { Domain } from "@sam/bus"
import { Deferred, Effect, Runtime } from "effect"
import { describe, expect, it } from "vitest"
import type { SessionEvent } from "../src/acp/SessionEvent.js"
import { type AgentEventReport, makeSessionOutbox } from "../src/node/SessionOutbox.js"

const { NodeProtocol } = Domain

type Stamped = SessionEvent & { readonly epoch: number; readonly bytes: number }
const text = (seq: number, epoch = 1, bytes = 100): Stamped =>
  ({ type: "text", text: `chunk ${seq}`, seq, at: 0, epoch, bytes }) as Stamped

/**
 * An outbox whose publishes wait until the test lets them go: what it published (each run's seqs, or a step's name),
 * in order.
 */
const harness = (options: { skip?: () => boolean } = {}) => {
  const log: Array<string> = []
  const pending: Array<() => void> = []
  const outbox = makeSessionOutbox({
    runtime: Runtime.defaultRuntime,
    skipEvents: options.skip ?? (() => false),
    prepare: (event) => ({
      nodeSeq: event.seq,
      epoch: (event as Stamped).epoch,
      body: { type: "text", text: (event as { text: string }).text },
      bytes: (event as Stamped).bytes,
      after: undefined
    }),
    publish: (events: Array<AgentEventReport>, epoch: number) =>
      new Promise<void>((resolve) => {
        log.push(`run e${epoch}: ${events.map((e) => e.nodeSeq).join(",")}`)
        pending.push(resolve)
      })
  })
  /** let the oldest publish be acknowledged, and the outbox go on */
  const ack = async () => {
    await until(() => pending.length > 0)
    pending.shift()!()
    await settle()
  }
  const step = (name: string) => Effect.sync(() => void log.push(`step ${name}`))
  return { outbox, log, ack, step, pending }
}

const settle = () => new Promise<void>((resolve) => setTimeout(resolve, 5))
const until = async (condition: () => boolean) => {
  for (let i = 0; i < 400 && !condition(); i++) await settle()
  if (!condition()) throw new Error("condition not met within 2 s")
}

describe("a session's outbox: the vm-agent's reports of one session, in order, as runs", () => {
  it("reports nothing until it begins, then what waited as one run", async () => {
    const { outbox, log, ack } = harness()
    outbox.event(text(1))
    outbox.event(text(2))
    await settle()
    expect(log).toEqual([])
    outbox.begin()
    await until(() => log.length === 1)
    expect(log).toEqual(["run e1: 1,2"])
    await ack()
  })

  it("sends an event at once, and those written while its publish waits as one run after it", async () => {
    const { outbox, log, ack } = harness()
    outbox.begin()
    outbox.event(text(1))
    await until(() => log.length === 1)
    for (const seq of [2, 3, 4]) outbox.event(text(seq))
    await settle()
    expect(log).toEqual(["run e1: 1"])
    await ack()
    await until(() => log.length === 2)
    expect(log).toEqual(["run e1: 1", "run e1: 2,3,4"])
    await ack()
  })

  it("runs a step in its place: the events before it go first, those after it in a run of their own", async () => {
    const { outbox, log, ack, step } = harness()
    outbox.event(text(1))
    outbox.event(text(2))
    outbox.step(step("prompting"))
    outbox.event(text(3))
    outbox.begin()
    await until(() => log.length === 1)
    await ack()
    await until(() => log.length === 3)
    expect(log).toEqual(["run e1: 1,2", "step prompting", "run e1: 3"])
    await ack()
  })

  it("starts a new run when the turn changes, and before a report would grow past its size", async () => {
    const { outbox, log, ack } = harness()
    const third = Math.ceil(NodeProtocol.MAX_EVENTS_REPORT_BYTES / 3)
    outbox.event(text(1, 1))
    for (const seq of [2, 3, 4, 5]) outbox.event(text(seq, 2, third))
    outbox.begin()
    while (log.length < 3) await ack()
    expect(log).toEqual(["run e1: 1", "run e2: 2,3", "run e2: 4,5"])
    await ack()
  })

  it("drops the agent's events once its task's result is reported, and still runs its steps", async () => {
    let resulted = false
    const { outbox, log, ack, step } = harness({ skip: () => resulted })
    outbox.begin()
    outbox.event(text(1))
    await until(() => log.length === 1)
    resulted = true
    outbox.event(text(2))
    outbox.step(step("idle"))
    await ack()
    await until(() => log.length === 2)
    await settle()
    expect(log).toEqual(["run e1: 1", "step idle"])
  })

  it("once closed, interrupts the step under way and reports nothing of what waits", async () => {
    const { outbox, log, ack } = harness()
    const blocked = Effect.runSync(Deferred.make<void>())
    let interrupted = false
    outbox.begin()
    outbox.event(text(1))
    const interrupt = Effect.sync(() => {
      interrupted = true
    })
    outbox.step(Deferred.await(blocked).pipe(Effect.onInterrupt(() => interrupt)))
    outbox.event(text(2))
    await ack()
    await settle()
    expect(outbox.isOpen()).toBe(true)
    await Effect.runPromise(outbox.close)
    expect(interrupted).toBe(true)
    expect(outbox.isOpen()).toBe(false)
    outbox.event(text(3))
    await settle()
    expect(log).toEqual(["run e1: 1"])
  })
})
