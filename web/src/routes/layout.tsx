import { component$, Slot } from "@builder.io/qwik"
import type { RequestHandler } from "@builder.io/qwik-city"

// Pages carry the user's data: never cached by a browser or a proxy.
export const onRequest: RequestHandler = (event) => {
  event.headers.set("cache-control", "no-store")
}

export default component$(() => <Slot />)
