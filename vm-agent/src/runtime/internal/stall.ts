import type { Readable } from "node:stream"
import { Effect } from "effect"
import { ProvisionError } from "./lifecycle.js"

/**
 * How long a clone from a server may go without writing a byte (git's progress goes on while it transfers) before it
 * is stopped and its workspace's create fails: `SAM_CLONE_STALL_MS`, default 5 minutes. A server that accepts and
 * never answers would otherwise hold the create, and every command of its workspace behind it, for ever. A local
 * repository's copy is not watched: it writes nothing until it is done.
 */
export const cloneStallMs = () => {
  const configured = Number(process.env.SAM_CLONE_STALL_MS)
  return Number.isFinite(configured) && configured > 0 ? configured : 300_000
}

/** Why a command that went silent was stopped. */
export const stalled = (command: string, ms: number) =>
  `${command.trim()} wrote nothing for ${Math.round(ms / 1000)} s and was stopped (SAM_CLONE_STALL_MS)`

/**
 * Fails with `step`'s error once none of `streams` has written for `ms`: raced with the command it watches, whose
 * scope (or canceler) then ends it.
 */
export const silence = (streams: ReadonlyArray<Readable>, ms: number, step: string, command: string) =>
  Effect.async<never, ProvisionError>((resume) => {
    let timer: ReturnType<typeof setTimeout> | undefined
    const arm = () => {
      clearTimeout(timer)
      timer = setTimeout(() => resume(Effect.fail(new ProvisionError({ step, message: stalled(command, ms) }))), ms)
    }
    for (const stream of streams) stream.on("data", arm)
    arm()
    return Effect.sync(() => {
      clearTimeout(timer)
      for (const stream of streams) stream.off("data", arm)
    })
  })
