import { fileURLToPath } from "node:url"
import { nodeServerAdapter } from "@builder.io/qwik-city/adapters/node-server/vite"
import { extendConfig } from "@builder.io/qwik-city/vite"
import baseConfig from "../../vite.config"

export default extendConfig(baseConfig, () => ({
  build: {
    ssr: true,
    outDir: "dist/server",
    rollupOptions: { input: ["src/entry.node-server.tsx", "@qwik-city-plan"] }
  },
  resolve: { alias: { undici: fileURLToPath(new URL("./undici.ts", import.meta.url)) } },
  plugins: [nodeServerAdapter({ name: "node-server", ssg: null })]
}))
