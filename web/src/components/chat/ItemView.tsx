import { component$, type QRL } from "@builder.io/qwik"
import type { Item } from "~/lib/timeline"

const TOOL_STATUS: Record<string, string> = {
  pending: "badge-info",
  in_progress: "badge-info",
  completed: "badge-success",
  failed: "badge-danger"
  // `cancelled` (its turn ended before the agent finished it) has the plain, muted badge
}

const DiffLines = component$<{ text: string }>(({ text }) => (
  <pre class="tool-output">
    {text.split("\n").map((line, i) => (
      <div
        key={i}
        class={
          line.startsWith("+")
            ? "diff-add"
            : line.startsWith("-")
              ? "diff-del"
              : line.startsWith("@@")
                ? "diff-hunk"
                : ""
        }
      >
        {line || " "}
      </div>
    ))}
  </pre>
))

export interface ItemViewProps {
  readonly item: Item
  readonly streaming: boolean
  /** the permission requests still waiting (from the snapshot) */
  readonly pending: ReadonlyArray<string>
  readonly onAnswer$: QRL<(requestId: string, optionId: string) => Promise<void>>
}

export const ItemView = component$<ItemViewProps>(({ item, streaming, pending, onAnswer$ }) => {
  switch (item.kind) {
    case "user":
      return (
        <div class="msg-user" data-kind="user" data-seq={item.seq}>
          {item.text}
        </div>
      )
    case "text":
      return (
        <div
          class={["msg-agent", streaming && "streaming"]}
          data-kind="text"
          data-seq={item.seq}
          dangerouslySetInnerHTML={item.html}
        />
      )
    case "thought":
      return (
        <details class="thought" data-kind="thought" open={streaming}>
          <summary>{streaming ? "Thinking…" : "Thought"}</summary>
          <div class="thought-body">{item.text}</div>
        </details>
      )
    case "plan":
      return (
        <section class="plan" data-kind="plan" aria-label="Plan">
          <h3>PLAN</h3>
          <ul>
            {item.entries.map((entry, i) => (
              <li key={i} data-status={entry.status}>
                <span class="plan-dot" aria-hidden="true" />
                <span>{entry.content}</span>
                <span class="sr-only">({entry.status.replace("_", " ")})</span>
              </li>
            ))}
          </ul>
        </section>
      )
    case "tool":
      return (
        <details class="tool" data-kind="tool" data-status={item.status}>
          <summary>
            <span class={["badge", TOOL_STATUS[item.status] ?? ""]}>{item.status.replace("_", " ")}</span>
            <span class="tool-title" title={item.title}>
              {item.toolKind === "execute" ? "$ " : ""}
              {item.title}
            </span>
            {item.toolKind && <span class="badge hide-phone">{item.toolKind}</span>}
            {item.location && <span class="badge mono hide-phone">{item.location}</span>}
          </summary>
          <div class="tool-body">
            {item.output === "" ? (
              <p class="hint" style={{ margin: 0 }}>
                No output.
              </p>
            ) : item.diff ? (
              <DiffLines text={item.output} />
            ) : (
              <pre class="tool-output">{item.output}</pre>
            )}
          </div>
        </details>
      )
    case "permission": {
      const waiting = item.outcome === null && pending.includes(item.requestId)
      return (
        <section class="permission" data-kind="permission" aria-label="Permission request">
          <strong>{item.title}</strong>
          {item.outcome !== null ? (
            <span class="hint">Answered: {item.outcome}</span>
          ) : waiting ? (
            <div class="row">
              {item.options.map((option) => (
                <button
                  key={option.optionId}
                  type="button"
                  class={["btn", option.kind.startsWith("allow") ? "btn-primary" : "btn-danger"]}
                  onClick$={() => onAnswer$(item.requestId, option.optionId)}
                >
                  {option.name}
                </button>
              ))}
            </div>
          ) : (
            <span class="hint">Waiting for an answer…</span>
          )}
        </section>
      )
    }
    case "system":
      return (
        <div class={["system", item.error && "error"]} data-kind="system" role={item.error ? "alert" : undefined}>
          {item.text}
        </div>
      )
  }
})
