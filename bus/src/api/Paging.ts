import { z } from "zod"

/**
 * Query-string pieces shared by list endpoints. Lists are newest first; `before` is the id of the
 * last item of the previous page (the response's `nextBefore`), so a page is stable while new items
 * arrive at the top.
 */
export const limit = (fallback: number, max: number) => z.coerce.number().int().min(1).max(max).default(fallback)

/** `true` or `false` in a query string */
export const flag = z.enum(["true", "false"]).transform((value) => value === "true")
