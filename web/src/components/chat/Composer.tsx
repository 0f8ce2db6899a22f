import { $, component$, type QRL, useSignal } from "@builder.io/qwik"

/** What the composer sends with a new chat's first message. */
export interface SendOptions {
  readonly agent: string
  readonly mode: "task" | "conversation"
  /** an agent profile of the project: its agent, and its settings and runtime (the mode stays as picked) */
  readonly profileId?: string
}

/** A profile as the composer offers it. */
export interface ComposerProfile {
  readonly id: string
  readonly name: string
  readonly agentName: string
  readonly taskMode: "task" | "conversation"
}

export interface ComposerProps {
  readonly placeholder: string
  readonly disabled?: boolean
  /** resolves to an error message, or null when sent (then the text is cleared; else it stays) */
  readonly onSend$: QRL<(text: string, options: SendOptions) => Promise<string | null>>
  /** the agent (or profile) and mode pickers of a new chat */
  readonly pickers?: boolean
  /** the project's agent profiles, offered in the agent picker */
  readonly profiles?: ReadonlyArray<ComposerProfile>
  readonly initial?: string
  readonly testId?: string
}

/** The message box: Ctrl/⌘+Enter sends, Enter is a newline; the text stays when sending fails. */
export const Composer = component$<ComposerProps>((props) => {
  const text = useSignal(props.initial ?? "")
  /** `agent:<id>` or `profile:<id>` */
  const agent = useSignal("agent:demo")
  const mode = useSignal<"task" | "conversation">("conversation")
  const sending = useSignal(false)
  const error = useSignal<string | null>(null)
  const send = $(async () => {
    const value = text.value
    if (value.trim() === "" || sending.value || props.disabled) return
    sending.value = true
    error.value = null
    const [kind, id = ""] = agent.value.split(":")
    const failure = await props.onSend$(
      value,
      kind === "profile" ? { agent: "", mode: mode.value, profileId: id } : { agent: id, mode: mode.value }
    )
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
              <select
                id="composer-agent"
                class="select"
                value={agent.value}
                onChange$={(_, el) => {
                  agent.value = el.value
                  // a profile brings its default mode; it can still be changed before sending
                  const profile = props.profiles?.find((p) => `profile:${p.id}` === el.value)
                  if (profile !== undefined) mode.value = profile.taskMode
                }}
              >
                <option value="agent:demo">Demo agent</option>
                {(props.profiles ?? []).length > 0 && (
                  <optgroup label="Profiles">
                    {(props.profiles ?? []).map((p) => (
                      <option key={p.id} value={`profile:${p.id}`}>
                        {`${p.name} (${p.agentName})`}
                      </option>
                    ))}
                  </optgroup>
                )}
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
