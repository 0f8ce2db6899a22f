/**
 * Text as a `text` column keeps it, faithfully: Postgres refuses the NUL character (U+0000) in
 * `text`, yet a task's prompt is data and may hold one. The same escape as StoredJson (ADR 0017): a
 * NUL is stored as U+E000 `0`, U+E000 itself as U+E000 U+E000, everything else unchanged.
 */
const ESC = "\uE000"

export const encode = (text: string): string =>
  text.includes("\u0000") || text.includes(ESC) ? text.replaceAll(ESC, ESC + ESC).replaceAll("\u0000", `${ESC}0`) : text

export const decode = (stored: string): string =>
  stored.includes(ESC)
    ? stored.replace(/\uE000(\uE000|0)/g, (_, what: string) => (what === ESC ? ESC : "\u0000"))
    : stored

/** For display in a one-line summary (a notification): a NUL shows as ␀ rather than vanishing. */
export const visible = (text: string): string => text.replaceAll("\u0000", "\u2400")
