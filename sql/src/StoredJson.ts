/**
 * JSON as a `jsonb` column keeps it, faithfully. Postgres refuses the NUL character (U+0000) in
 * `jsonb` (and `text`), yet agent output and prompts are data and may hold one: so a NUL is stored
 * as the two characters U+E000 `0`, and U+E000 itself (a private-use character) as U+E000 U+E000.
 * Everything else is stored unchanged, so queries and indexes on the column keep working.
 *
 * Both functions work on JSON text, not values: `encode` takes `JSON.stringify`'s output (where a
 * NUL is the escape `\u0000`) and `decode` the column read as text (`payload::text`), so the feed
 * can splice a stored event into a frame without parsing it. U+E000 can only occur inside JSON
 * strings, so replacing it never touches the JSON's structure. See ADR 0017.
 */
const ESC = "\uE000"

/** `JSON.stringify` output → text `jsonb` accepts. A `\u0000` escape counts only when its backslash is not itself escaped. */
export const encode = (json: string): string =>
  json.includes("\\u0000") || json.includes(ESC)
    ? json
        .replaceAll(ESC, ESC + ESC)
        .replace(/\\(\\|u0000)/g, (match, what: string) => (what === "\\" ? match : `${ESC}0`))
    : json

/** Stored JSON text → the JSON that was encoded (NULs back as `\u0000`). */
export const decode = (stored: string): string =>
  stored.includes(ESC)
    ? stored.replace(/\uE000(\uE000|0)/g, (_, what: string) => (what === ESC ? ESC : "\\u0000"))
    : stored
