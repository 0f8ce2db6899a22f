import { component$ } from "@builder.io/qwik"
import { ATTENTION_LABEL, type Attention } from "~/lib/sessions"

const PATHS: Record<Attention, string> = {
  needs_input: "M12 22a10 10 0 1 0 0-20 10 10 0 0 0 0 20zM9.1 9a3 3 0 0 1 5.8 1c0 2-3 3-3 3M12 17h.01",
  failed: "M12 22a10 10 0 1 0 0-20 10 10 0 0 0 0 20zM15 9l-6 6M9 9l6 6",
  working: "M21 12a9 9 0 1 1-6.2-8.6",
  idle: "M12 22a10 10 0 1 0 0-20 10 10 0 0 0 0 20zM10 15V9M14 15V9",
  sleeping: "M12 3a6 6 0 0 0 9 9 9 9 0 1 1-9-9z",
  completed: "M22 11.1V12a10 10 0 1 1-5.9-9.1M22 4 12 14l-3-3",
  stopped: "M12 22a10 10 0 1 0 0-20 10 10 0 0 0 0 20zM9 9h6v6H9z"
}

export const StatusIcon = component$<{ status: Attention }>(({ status }) => (
  <svg
    class={["status-icon", `status-${status}`]}
    viewBox="0 0 24 24"
    fill="none"
    stroke="currentColor"
    stroke-width="2.2"
    stroke-linecap="round"
    stroke-linejoin="round"
    role="img"
    aria-label={ATTENTION_LABEL[status]}
    data-status={status}
  >
    <path d={PATHS[status]} />
  </svg>
))
