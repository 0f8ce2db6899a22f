import type { z } from "zod"

/**
 * Text a person types that the gateway stores in a `text` column (names, logins, reasons, branch
 * names, task prompts): Postgres cannot hold the NUL character (U+0000), so a body with one is
 * refused with 400 `invalid_body` naming the field, rather than failing later. Data that is not
 * typed (agent output, session prompts, session events) is stored faithfully instead (ADR 0017).
 */
export const NO_NUL_MESSAGE = "must not contain the NUL character (\\u0000): it cannot be stored"

/** `schema`, also refusing a NUL anywhere in the string. */
export const storable = <S extends z.ZodString>(schema: S) =>
  schema.refine((value) => !value.includes("\u0000"), NO_NUL_MESSAGE)
