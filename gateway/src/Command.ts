import type { Envelope } from "@sam/bus"
import { Actors } from "@sam/bus"
import { Effect } from "effect"
import { ApiError } from "./ApiError.js"

type Kind = Parameters<typeof Actors.ask>[0]

/**
 * Build a command from user input; a value its schema refuses is the caller's `invalid_body`
 * (the route's own schema normally catches it first).
 */
export const build = <A extends Envelope>(make: () => A) =>
  Effect.try({
    try: make,
    catch: (e) =>
      new ApiError({ code: "invalid_body", message: `the request is not valid: ${e instanceof Error ? e.message : e}` })
  })

/**
 * Ask an actor and turn its answer into the API's terms: a refusal (`{ ok: false, code, message }`)
 * becomes `invalid_state` (or `not_found`), a dead letter `internal`, no answer in time `unavailable`.
 * Returns the actor's reply otherwise.
 */
export const ask = (kind: Kind, id: string, command: Envelope) =>
  Actors.ask(kind, id, command).pipe(
    Effect.mapError(
      (e) =>
        new ApiError({
          code: "unavailable",
          message: `the ${kind.name} did not answer in time; it may still apply the command (${e._tag})`
        })
    ),
    Effect.flatMap((answer) => {
      if (answer.outcome === "dead-lettered") {
        return Effect.fail(new ApiError({ code: "internal", message: `the ${kind.name} could not apply the command` }))
      }
      const reply = (answer.reply ?? {}) as { ok?: boolean; code?: string; message?: string; [key: string]: unknown }
      if (reply.ok === false) {
        return Effect.fail(
          new ApiError({
            code: reply.code === "not_found" ? "not_found" : "invalid_state",
            message: reply.message ?? `the ${kind.name} refused the command (${reply.code ?? "refused"})`,
            ...(reply.code === undefined ? {} : { details: { reason: reply.code } })
          })
        )
      }
      return Effect.succeed(reply)
    })
  )
