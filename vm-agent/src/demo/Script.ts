/** One step of a demo-agent prompt script; see `parseScript`. */
export type Step =
  | { readonly _tag: "say"; readonly text: string }
  /** says `stamp <ms since the epoch>` at the moment it writes it (benchmarks measure the live path with it) */
  | { readonly _tag: "stamp" }
  | { readonly _tag: "think"; readonly text: string }
  | { readonly _tag: "plan"; readonly entries: ReadonlyArray<string> }
  | { readonly _tag: "tool"; readonly title: string }
  | { readonly _tag: "run"; readonly command: string }
  | { readonly _tag: "sleep"; readonly ms: number }
  | { readonly _tag: "ignore-cancel" }
  | { readonly _tag: "crash" }
  | { readonly _tag: "garbage" }
  | { readonly _tag: "recall" }
  | { readonly _tag: "ask-permission"; readonly title: string }
  /** answers the prompt with a JSON-RPC error, as an agent does when its model provider refuses (a bad key) */
  | { readonly _tag: "fail"; readonly message: string }
  /** ends the turn at once with this stop reason, as an agent does at a limit (`max_tokens`, `max_turn_requests`) or refusing */
  | { readonly _tag: "stop"; readonly reason: StopAs }
  | { readonly _tag: "echo"; readonly text: string }

/** The stop reasons a `stop` line may give: ACP's, but `cancelled`, which only a cancel gives. */
export type StopAs = "end_turn" | "max_tokens" | "max_turn_requests" | "refusal"
const STOPS: ReadonlySet<string> = new Set<StopAs>(["end_turn", "max_tokens", "max_turn_requests", "refusal"])

const keywordOf = (line: string): [string, string] => {
  const match = /^(\S+)\s*(.*)$/.exec(line)
  return match ? [match[1]!, match[2]!.trim()] : ["", ""]
}

const stepOf = (line: string): Step => {
  const [keyword, rest] = keywordOf(line)
  switch (keyword) {
    case "say":
      return { _tag: "say", text: rest }
    case "stamp":
      return { _tag: "stamp" }
    case "think":
      return { _tag: "think", text: rest }
    case "plan":
      return {
        _tag: "plan",
        entries: rest
          .split("|")
          .map((entry) => entry.trim())
          .filter((entry) => entry.length > 0)
      }
    case "tool":
      return { _tag: "tool", title: rest || "tool" }
    case "run":
      return { _tag: "run", command: rest }
    case "sleep": {
      const ms = Number(rest)
      return Number.isFinite(ms) && ms >= 0 ? { _tag: "sleep", ms } : { _tag: "echo", text: line }
    }
    case "ignore-cancel":
      return { _tag: "ignore-cancel" }
    case "crash":
      return { _tag: "crash" }
    case "garbage":
      return { _tag: "garbage" }
    case "recall":
      return { _tag: "recall" }
    case "ask-permission":
      return { _tag: "ask-permission", title: rest || "permission" }
    case "fail":
      return { _tag: "fail", message: rest || "the demo agent failed this turn" }
    case "stop":
      return STOPS.has(rest) ? { _tag: "stop", reason: rest as StopAs } : { _tag: "echo", text: line }
    default:
      return { _tag: "echo", text: line }
  }
}

/**
 * A prompt is a script, one step a line. A line whose first word is not a keyword is echoed back, so a plain
 * sentence gets a short friendly reply.
 */
export const parseScript = (text: string): ReadonlyArray<Step> =>
  text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line.length > 0)
    .map(stepOf)

/** Splits text into a few chunks (at word boundaries) so a reply streams. */
export const chunksOf = (text: string, count = 3): ReadonlyArray<string> => {
  const words = text.split(/(?<=\s)/)
  const size = Math.max(1, Math.ceil(words.length / count))
  const chunks: Array<string> = []
  for (let i = 0; i < words.length; i += size) chunks.push(words.slice(i, i + size).join(""))
  return chunks.length > 0 ? chunks : [text]
}
