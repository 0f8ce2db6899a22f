import { component$, useStore, useVisibleTask$ } from "@builder.io/qwik"
import * as Api from "@sam/bus/api"
import { api, call, onFrame } from "~/lib/browser"

type Entry = Api.BootLogEntry

const keyOf = (e: Entry) => (e.seq === undefined ? `${e.at}|${e.step}|${e.status}|${e.message}` : `#${e.seq}`)

/** Numbered lines in their order; a line without a number (the vm-agent's own) after them, as they came. */
const merged = (known: ReadonlyArray<Entry>, more: ReadonlyArray<Entry>) => {
  const seen = new Set(known.map(keyOf))
  const all = [...known, ...more.filter((e) => !seen.has(keyOf(e)))]
  return all
    .map((e, i) => ({ e, i }))
    .sort((a, b) => (a.e.seq ?? Number.MAX_SAFE_INTEGER) - (b.e.seq ?? Number.MAX_SAFE_INTEGER) || a.i - b.i)
    .map(({ e }) => e)
}

/**
 * A node's boot log, live: the lines loaded with the page, then each line the node sends as it boots
 * (`node.bootlog` on the feed). When the feed (re)connects the whole log is read again, so nothing sent
 * while it was away is missing.
 */
export const NodeBootLog = component$(
  (props: { nodeId: string; initial: ReadonlyArray<Entry>; live: boolean; title?: string }) => {
    const state = useStore({ entries: [...props.initial] as Array<Entry> })

    // biome-ignore lint/correctness/noQwikUseVisibleTask: the live feed is a browser socket (house style: live sockets only)
    useVisibleTask$(
      ({ cleanup }) => {
        const nodeId = props.nodeId
        const reload = async () => {
          const result = await call(api.call(Api.NodeBootEndpoints.nodeBootLog, { params: { nodeId } }))
          if (result.ok) state.entries = merged(result.value.entries, state.entries)
        }
        const stop = onFrame((frame) => {
          if (frame.type === "hello") void reload()
          if (frame.type === "event" && frame.eventType === "node.bootlog" && frame.id === nodeId) {
            const body = frame.body as { entries?: Array<Entry> }
            state.entries = merged(state.entries, body.entries ?? [])
          }
        })
        cleanup(() => stop())
      },
      { strategy: "document-ready" }
    )

    if (state.entries.length === 0 && !props.live) return null
    return (
      <section class="glass card stack">
        <h2>{props.title ?? "Boot log"}</h2>
        {state.entries.length === 0 ? (
          <p class="hint" data-testid="node-bootlog-empty">
            No boot log yet: lines appear here as the node boots.
          </p>
        ) : (
          <pre class="secret" style={{ margin: 0, maxHeight: "40vh", overflow: "auto" }} data-testid="node-bootlog">
            {state.entries.map((e) => `${e.at.slice(11, 19)}  ${e.step} ${e.status}: ${e.message}`).join("\n")}
          </pre>
        )}
      </section>
    )
  }
)
