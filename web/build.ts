// Builds the web app (client and node-server bundles into web/dist) when its sources changed since
// the last build. `sam up` and the browser tests call `ensureBuilt`; `node --import tsx web/build.ts`
// runs it from a shell (`--force` to build anyway).
import { spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { dirname, join, relative } from "node:path"
import { fileURLToPath } from "node:url"

const WEB = dirname(fileURLToPath(import.meta.url))
const ROOT = join(WEB, "..")
const STAMP = join(WEB, "dist", ".source-hash")
const ENTRY = join(WEB, "dist", "server", "entry.node-server.js")

/** What the bundles are made of: the app, its config, and the contract and client it bundles. */
const SOURCES = [
  "web/src",
  "web/public",
  "web/adapters",
  "web/vite.config.ts",
  "web/package.json",
  "web/tsconfig.json",
  "web/build.ts",
  "bus/src/api",
  "bus/src/domain",
  "bus/src/Ids.ts",
  "bus/src/Envelope.ts",
  "gateway/src/client",
  "pnpm-lock.yaml"
]

const files = (path: string): Array<string> => {
  if (!existsSync(path)) return []
  if (!statSync(path).isDirectory()) return [path]
  return readdirSync(path)
    .sort()
    .flatMap((name) => files(join(path, name)))
}

/** A hash of every source file's path and content. */
export const sourceHash = () => {
  const hash = createHash("sha256")
  for (const file of SOURCES.flatMap((source) => files(join(ROOT, source)))) {
    hash.update(relative(ROOT, file))
    hash.update("\0")
    hash.update(readFileSync(file))
  }
  return hash.digest("hex")
}

const vite = (args: ReadonlyArray<string>) =>
  new Promise<void>((resolve, reject) => {
    const bin = join(WEB, "node_modules", ".bin", "vite")
    // NODE_ENV decides Vite's `import.meta.env.DEV`: a build from a test runner (NODE_ENV=test) must be a production one.
    const child = spawn(bin, ["build", ...args], {
      cwd: WEB,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NODE_ENV: "production" }
    })
    let output = ""
    child.stdout.on("data", (chunk) => {
      output += chunk
    })
    child.stderr.on("data", (chunk) => {
      output += chunk
    })
    child.on("error", reject)
    child.on("exit", (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`vite build ${args.join(" ")} failed (exit ${code}):\n${output.slice(-4000)}`))
    )
  })

export interface BuildResult {
  /** false when the build was up to date */
  readonly built: boolean
  readonly ms: number
  readonly entry: string
}

/** Builds the app unless dist/ holds a build of these very sources. */
export const ensureBuilt = async (
  options: { readonly force?: boolean; readonly onBuild?: () => void } = {}
): Promise<BuildResult> => {
  const started = Date.now()
  const hash = sourceHash()
  const stamp = existsSync(STAMP) ? readFileSync(STAMP, "utf8").trim() : ""
  if (!options.force && stamp === hash && existsSync(ENTRY)) {
    return { built: false, ms: Date.now() - started, entry: ENTRY }
  }
  options.onBuild?.()
  await vite([])
  await vite(["-c", "adapters/node-server/vite.config.ts"])
  writeFileSync(STAMP, hash)
  return { built: true, ms: Date.now() - started, entry: ENTRY }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  ensureBuilt({ force: process.argv.includes("--force") }).then(
    (result) =>
      console.log(
        result.built
          ? `  ✓ web app built in ${(result.ms / 1000).toFixed(1)} s (web/dist)`
          : "  ✓ web app up to date (web/dist)"
      ),
    (error) => {
      console.error(`✗ ${error instanceof Error ? error.message : String(error)}`)
      process.exit(1)
    }
  )
}
