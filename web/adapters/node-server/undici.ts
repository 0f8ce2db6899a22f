// Qwik City's node middleware imports undici only to polyfill fetch on Nodes without it; Node ≥ 20.19
// has it. Bundling undici itself would hoist its lazy `require("node:sqlite")` into an import that
// Node 20 cannot load, so the middleware gets the globals instead.
export const fetch = globalThis.fetch
export const Headers = globalThis.Headers
export const Request = globalThis.Request
export const Response = globalThis.Response
export const FormData = globalThis.FormData
