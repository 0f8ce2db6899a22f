import { fileURLToPath } from "node:url"
import { qwikVite } from "@builder.io/qwik/optimizer"
import { qwikCity } from "@builder.io/qwik-city/vite"
import { defineConfig } from "vite"

/** The client build goes to dist/client, the server build (adapters/node-server) to dist/server. */
export default defineConfig(() => ({
  plugins: [
    qwikCity({ trailingSlash: false }),
    qwikVite({
      client: { outDir: "dist/client" },
      ssr: { outDir: "dist/server" },
      // the problem page: a loader's failure is shown in the app's frame (web/src/lib/server.ts `load`)
      experimental: ["enableRequestRewrite"]
    })
  ],
  resolve: { alias: { "~": fileURLToPath(new URL("./src", import.meta.url)) } },
  build: { target: "es2022" },
  logLevel: "warn" as const
}))
