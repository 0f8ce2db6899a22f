import type * as Api from "@sam/bus/api"
import { renderMarkdown } from "./markdown"

/** One row of the chat timeline, built from the session's transcript entries (seq order). */
export type Item =
  | { readonly kind: "user"; readonly key: string; readonly seq: number; readonly text: string }
  | { readonly kind: "text"; readonly key: string; readonly seq: number; readonly html: string; readonly epoch: number }
  | {
      readonly kind: "thought"
      readonly key: string
      readonly seq: number
      readonly text: string
      readonly epoch: number
    }
  | {
      readonly kind: "plan"
      readonly key: string
      readonly seq: number
      readonly entries: ReadonlyArray<{ readonly content: string; readonly status: string }>
    }
  | {
      readonly kind: "tool"
      readonly key: string
      readonly seq: number
      readonly toolCallId: string
      readonly title: string
      readonly toolKind: string | null
      readonly status: string
      readonly location: string | null
      readonly output: string
      readonly diff: boolean
    }
  | {
      readonly kind: "permission"
      readonly key: string
      readonly seq: number
      readonly requestId: string
      readonly title: string
      readonly options: ReadonlyArray<{ readonly optionId: string; readonly name: string; readonly kind: string }>
      readonly outcome: string | null
    }
  | {
      readonly kind: "system"
      readonly key: string
      readonly seq: number
      readonly text: string
      readonly error: boolean
    }

export interface Entry {
  readonly seq: number
  readonly promptEpoch: number | null
  /** as the API and the feed give it; the feed's frames are not checked again here, so fields are read with care */
  readonly event: Api.SessionEventBody
}

const str = (value: unknown): string => (typeof value === "string" ? value : "")

/** Text of ACP tool-call content blocks: `content` text, diffs as unified-ish text, terminals by id. */
const contentText = (content: ReadonlyArray<Api.ToolCallContent> | undefined): { text: string; diff: boolean } => {
  let diff = false
  const parts: Array<string> = []
  for (const b of Array.isArray(content) ? content : []) {
    if (b.type === "content") {
      const inner = b.content as Record<string, unknown> | undefined
      parts.push(inner?.type === "text" ? str(inner.text) : `[${str(inner?.type)}]`)
    } else if (b.type === "diff") {
      diff = true
      const oldLines = str(b.oldText).split("\n")
      const newLines = str(b.newText).split("\n")
      parts.push(
        `--- ${str(b.path)}\n+++ ${str(b.path)}\n@@\n${oldLines.map((l) => `-${l}`).join("\n")}\n${newLines.map((l) => `+${l}`).join("\n")}`
      )
    } else if (b.type === "terminal") parts.push(`[terminal ${str(b.terminalId)}]`)
  }
  return { text: parts.join(""), diff }
}

const stopText: Record<string, string> = {
  cancelled: "Turn interrupted",
  max_tokens: "Turn ended: the agent hit its token limit",
  max_turn_requests: "Turn ended: the agent reached its limit of model requests",
  refusal: "Turn ended: the agent refused",
  error: "Turn ended with an error",
  lost: "Turn lost (its node restarted or went silent)"
}

/**
 * The timeline of one session, fed entry by entry (each seq once; repeats and older seqs are
 * ignored). Consecutive text (or thought) of one prompt merges into one item; tool-call updates and
 * permission outcomes change their item in place (a new object, so renders see the change).
 */
export class Timeline {
  items: Array<Item> = []
  lastSeq = 0
  /** the latest prompt the agent has begun (its `prompt-started`); a later one waits its turn */
  startedEpoch = 0
  /**
   * Prompts accepted while the agent worked (`prompt-queued`) whose turn has not begun, oldest first. One the
   * agent never took (its node lost it, the task ended) stays here: the view says it was not delivered.
   */
  queued: Array<{ readonly epoch: number; readonly seq: number; readonly text: string }> = []
  /** bumped on every change, so a view can tell whether to render */
  version = 0
  private readonly tools = new Map<string, number>()
  private readonly permissions = new Map<string, number>()
  private texts = new Map<number, string>()

  add(entry: Entry): boolean {
    if (entry.seq <= this.lastSeq) return false
    this.lastSeq = entry.seq
    this.apply(entry)
    this.version++
    return true
  }

  private push(item: Item) {
    this.items.push(item)
  }

  private replace(index: number, item: Item) {
    this.items[index] = item
  }

  private apply({ seq, promptEpoch, event }: Entry) {
    const epoch = promptEpoch ?? 0
    const last = this.items[this.items.length - 1]
    const key = `s${seq}`
    switch (event.type) {
      case "prompt-queued":
        if (epoch > this.startedEpoch) this.queued = [...this.queued, { epoch, seq, text: str(event.text) }]
        return
      case "prompt-started": {
        this.startedEpoch = Math.max(this.startedEpoch, epoch)
        // an earlier queued prompt whose turn never began: a later one began instead
        for (const skipped of this.queued.filter((q) => q.epoch < epoch))
          this.push({
            kind: "system",
            key: `s${skipped.seq}`,
            seq: skipped.seq,
            text: `Not delivered (the agent never began its turn): ${skipped.text}`,
            error: true
          })
        this.queued = this.queued.filter((q) => q.epoch > epoch)
        this.push({ kind: "user", key, seq, text: str(event.text) })
        return
      }
      case "text": {
        if (last?.kind === "text" && last.epoch === epoch) {
          const text = (this.texts.get(last.seq) ?? "") + str(event.text)
          this.texts.set(last.seq, text)
          this.replace(this.items.length - 1, { ...last, html: renderMarkdown(text) })
        } else {
          this.texts.set(seq, str(event.text))
          this.push({ kind: "text", key, seq, html: renderMarkdown(str(event.text)), epoch })
        }
        return
      }
      case "thought":
        if (last?.kind === "thought" && last.epoch === epoch) {
          this.replace(this.items.length - 1, { ...last, text: last.text + str(event.text) })
        } else this.push({ kind: "thought", key, seq, text: str(event.text), epoch })
        return
      case "plan": {
        const entries = (Array.isArray(event.entries) ? event.entries : []).map((e) => ({
          content: str(e.content),
          status: str(e.status) || "pending"
        }))
        this.push({ kind: "plan", key, seq, entries })
        return
      }
      case "tool-call": {
        const { text, diff } = contentText(event.content)
        const locations = Array.isArray(event.locations) ? event.locations : []
        const first = locations[0]
        this.tools.set(str(event.toolCallId), this.items.length)
        this.push({
          kind: "tool",
          key,
          seq,
          toolCallId: str(event.toolCallId),
          title: str(event.title) || "tool",
          toolKind: typeof event.kind === "string" ? event.kind : null,
          status: str(event.status) || "pending",
          location: first === undefined ? null : `${str(first.path)}${first.line ? `:${first.line}` : ""}`,
          output: text,
          diff
        })
        return
      }
      case "tool-call-update": {
        const index = this.tools.get(str(event.toolCallId))
        const item = index === undefined ? undefined : this.items[index]
        if (index === undefined || item?.kind !== "tool") return
        const { text, diff } = contentText(event.content)
        const raw = event.rawOutput
        const exit =
          typeof raw === "object" && raw !== null ? (raw as { readonly exitCode?: unknown }).exitCode : undefined
        this.replace(index, {
          ...item,
          title: str(event.title) || item.title,
          status: str(event.status) || item.status,
          output: item.output + text + (typeof exit === "number" && exit !== 0 ? `\n[exit code ${exit}]` : ""),
          diff: item.diff || diff
        })
        return
      }
      case "permission-requested": {
        this.permissions.set(str(event.requestId), this.items.length)
        const options = (Array.isArray(event.options) ? event.options : []).map((o) => ({
          optionId: str(o.optionId),
          name: str(o.name),
          kind: str(o.kind)
        }))
        this.push({
          kind: "permission",
          key,
          seq,
          requestId: str(event.requestId),
          title: str(event.title) || "The agent asks for permission",
          options,
          outcome: null
        })
        return
      }
      case "permission-resolved":
      case "permission-answered": {
        const index = this.permissions.get(str(event.requestId))
        const item = index === undefined ? undefined : this.items[index]
        if (index === undefined || item?.kind !== "permission") return
        const outcome = str(event.outcome) || "answered"
        const name = item.options.find((o) => o.optionId === outcome)?.name ?? outcome
        this.replace(index, { ...item, outcome: name })
        return
      }
      case "turn-ended": {
        const text = stopText[str(event.stopReason)]
        if (text !== undefined) this.push({ kind: "system", key, seq, text, error: event.stopReason === "error" })
        return
      }
      case "turn-failed":
        this.push({ kind: "system", key, seq, text: `Turn failed: ${str(event.message ?? event.reason)}`, error: true })
        return
      case "crashed":
        this.push({
          kind: "system",
          key,
          seq,
          text: `Agent crashed (exit ${event.exitCode ?? event.signal ?? "?"})${str(event.stderrTail) ? `\n${str(event.stderrTail)}` : ""}`,
          error: true
        })
        return
      case "restarted":
        this.push({
          kind: "system",
          key,
          seq,
          text: `Agent restarted after a ${str(event.reason)}${event.contextLost ? " (context lost)" : ""}`,
          error: false
        })
        return
      case "failed":
        this.push({ kind: "system", key, seq, text: `Session failed: ${str(event.reason)}`, error: true })
        return
      case "stopped":
        this.push({ kind: "system", key, seq, text: "Session stopped", error: false })
        return
      default:
        return
    }
  }
}
