import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { createQwikCity } from "@builder.io/qwik-city/middleware/node"
import qwikCityPlan from "@qwik-city-plan"
import render from "./entry.ssr"
import { config } from "./lib/server"

export { configure } from "./lib/server"

/** The connect-style handlers the gateway chains (static file → route → not found); see gateway/src/WebApp.ts. */
export const { router, notFound, staticFile } = createQwikCity({
  render,
  qwikCityPlan,
  getClientConn: (req) => ({ ip: config.clientAddress(req) }),
  static: {
    root: join(dirname(fileURLToPath(import.meta.url)), "..", "client"),
    cacheControl: "public, max-age=31536000, immutable"
  }
})
