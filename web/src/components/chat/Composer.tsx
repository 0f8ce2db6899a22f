import { $, component$, type QRL, useSignal } from "@builder.io/qwik"

export interface ComposerProps {
  readonly placeholder: string
  readonly disabled?: boolean
  /** resolves to an error message, or null when sent (then the text is cleared; else it stays) */
  readonly onSend$: QRL<
    (text: string, options: { agent: string; mode: "task" | "conversation" }) => Promise<string | null>
  >
  /** the agent and mode pickers of a new chat */
  readonly pickers?: boolean
  readonly initial?: string
  readonly testId?: string
}

/** The message box: Ctrl/⌘+Enter sends, Enter is a newline; the text stays when sending fails. */
export const Composer = component$<ComposerProps>((props) => {
  const text = useSignal(props.initial ?? "")
  const agent = useSignal("demo")
  const mode = useSignal<"task" | "conversation">("conversation")
  const sending = useSignal(false)
  const error = useSignal<string | null>(null)
  const send = $(async () => {
    const value = text.value
    if (value.trim() === "" || sending.value || props.disabled) return
    sending.value = true
    error.value = null
    const failure = await props.onSend$(value, { agent: agent.value, mode: mode.value })
    sending.value = false
    if (failure === null) text.value = ""
    else error.value = failure
  })
  return (
    <form class="composer" preventdefault:submit onSubmit$={send} data-testid={props.testId ?? "composer"}>
      <div class="composer-box glass">
        <label class="sr-only" for="composer-text">
          Message
        </label>
        <textarea
          id="composer-text"
          bind:value={text}
          placeholder={props.placeholder}
          disabled={props.disabled}
          rows={3}
          onKeyDown$={(event) => {
            if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) send()
          }}
        />
        <div class="composer-foot">
          {props.pickers && (
            <>
              <label class="sr-only" for="composer-agent">
                Agent
              </label>
              <select id="composer-agent" class="select" bind:value={agent}>
                <option value="demo">Demo agent</option>
                <option value="claude-code" disabled>
                  Claude Code (later)
                </option>
                <option value="codex" disabled>
                  Codex (later)
                </option>
              </select>
              <label class="sr-only" for="composer-mode">
                Mode
              </label>
              <select id="composer-mode" class="select" bind:value={mode}>
                <option value="conversation">Chat</option>
                <option value="task">Task</option>
              </select>
            </>
          )}
          <span class="hint hide-phone" style={{ flex: 1 }}>
            Ctrl/⌘+Enter to send, Enter for a new line
          </span>
          <span class="spacer" />
          <button
            class="btn btn-primary"
            type="submit"
            disabled={props.disabled || sending.value || text.value.trim() === ""}
          >
            {sending.value ? "Sending…" : "Send"}
          </button>
        </div>
        {error.value !== null && (
          <p class="form-error" role="alert" data-testid="send-error" style={{ margin: 0 }}>
            {error.value}
          </p>
        )}
      </div>
    </form>
  )
})
