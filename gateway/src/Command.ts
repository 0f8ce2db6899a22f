import { Actors, Domain, type Envelope } from "@sam/bus"
import { Effect } from "effect"
import type { z } from "zod"
import { ApiError } from "./ApiError.js"

type Kind = Parameters<typeof Actors.ask>[0]
const { Replies } = Domain

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
 * Returns the actor's reply decoded with `reply`, the schema of what it answers this command
 * (`Domain.Replies`); an answer of another shape is `internal`.
 */
export const ask = <S extends z.ZodType = typeof Replies.Applied>(
  kind: Kind,
  id: string,
  command: Envelope,
  reply?: S
) =>
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
      const refused = Replies.Refusal.safeParse(answer.reply)
      if (refused.success) {
        const { code, message } = refused.data
        return Effect.fail(
          new ApiError({
            code: code === "not_found" ? "not_found" : "invalid_state",
            message: message ?? `the ${kind.name} refused the command (${code})`,
            details: { reason: code }
          })
        )
      }
      const decoded = (reply ?? Replies.Applied).safeParse(answer.reply ?? { ok: true })
      if (!decoded.success) {
        return Effect.fail(
          new ApiError({
            code: "internal",
            message: `the ${kind.name} answered ${command.type} in a shape the gateway does not know`
          })
        )
      }
      return Effect.succeed(decoded.data as z.output<S>)
    })
  )
