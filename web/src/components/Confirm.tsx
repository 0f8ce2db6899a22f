import { component$, useSignal } from "@builder.io/qwik"
import { Form } from "@builder.io/qwik-city"

/** A destructive button that asks once more before it submits its action. */
export const ConfirmAction = component$<{
  // biome-ignore lint/suspicious/noExplicitAny: any route action
  action: any
  label: string
  confirm: string
}>(({ action, label, confirm }) => {
  const asking = useSignal(false)
  return asking.value ? (
    <Form action={action} class="row" style={{ gap: "var(--space-2)" }}>
      <span class="hint">{confirm}</span>
      <button class="btn btn-danger btn-sm" type="submit">
        Yes, {label.toLowerCase()}
      </button>
      <button
        class="btn btn-sm"
        type="button"
        onClick$={() => {
          asking.value = false
        }}
      >
        Keep it
      </button>
    </Form>
  ) : (
    <button
      class="btn btn-sm btn-danger"
      type="button"
      onClick$={() => {
        asking.value = true
      }}
    >
      {label}…
    </button>
  )
})
