import { execFile } from "node:child_process"
import { createHash } from "node:crypto"
import { mkdir, readFile, realpath, rename, rm, stat, symlink, writeFile } from "node:fs/promises"
import { createRequire } from "node:module"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { gzip } from "node:zlib"
import { Data, Effect } from "effect"

const gzipAsync = promisify(gzip)

export class ArtifactError extends Data.TaggedError("ArtifactError")<{ readonly message: string }> {}

/** What a node installs: the compiled vm-agent and the demo agent it runs (infra/build.mjs writes them). */
export const FILES = ["vm-agent.mjs", "demo-agent.mjs"] as const

/** `sam` in the artifact: `./sam node join <url> <token>` on any machine with Node >= 20. */
const LAUNCHER = `#!/bin/sh
# sam on a node (ADR 0027): \`sam node join <url> <token>\`, \`sam node run\`; the vm-agent is beside this file.
here=$(dirname "$(readlink -f "$0")")
export SAM_COMPILED=1 SAM_DEMO_AGENT_BUNDLE="\${SAM_DEMO_AGENT_BUNDLE:-$here/demo-agent.mjs}"
exec node "$here/vm-agent.mjs" "$@"
`

const defaultDist = () => resolve(fileURLToPath(new URL("../../..", import.meta.url)), "dist")

export interface Artifact {
  readonly path: string
  readonly sha256: string
  readonly bytes: number
}

/**
 * Packages the bundles require by name (esbuild leaves them out), each found along the dependency chain
 * that needs it from the vm-agent's package (dockerode requires ssh2 when it loads), with their
 * dependencies, flattened.
 */
const RUNTIME_PACKAGES: ReadonlyArray<ReadonlyArray<string>> = [["dockerode", "docker-modem", "ssh2"]]

const repoRoot = () => resolve(fileURLToPath(new URL("../../..", import.meta.url)))

const runtimePackages = async () => {
  const found = new Map<string, string>()
  const visit = async (name: string, from: string) => {
    if (found.has(name)) return
    let dir: string
    try {
      dir = dirname(createRequire(from).resolve(`${name}/package.json`))
    } catch {
      return // an optional dependency that is not installed
    }
    found.set(name, await realpath(dir))
    const manifest = JSON.parse(await readFile(join(dir, "package.json"), "utf8")) as {
      dependencies?: Record<string, string>
    }
    for (const dep of Object.keys(manifest.dependencies ?? {})) await visit(dep, join(dir, "package.json"))
  }
  for (const chain of RUNTIME_PACKAGES) {
    let from = join(repoRoot(), "vm-agent", "package.json")
    for (const link of chain.slice(0, -1)) from = createRequire(from).resolve(`${link}/package.json`)
    await visit(chain[chain.length - 1]!, from)
    if (!found.has(chain[chain.length - 1]!)) throw new Error(`${chain.join(" → ")} is not installed`)
  }
  return [...found]
}

let cached: { readonly key: string; readonly artifact: Artifact } | undefined

/**
 * `dist/vm-agent.tar.gz` and its sha256, made from the current build once and reused while the build
 * is unchanged. The tarball is byte-for-byte reproducible (sorted names, zero times and owners, gzip
 * without a timestamp), so every gateway and control-plane process of one build names the same
 * sha256 — the one a cloud node's user data pins.
 */
export const current = (dist: string = process.env.SAM_ARTIFACT_DIST ?? defaultDist()) =>
  Effect.tryPromise({
    try: async () => {
      const sources = await Promise.all(FILES.map((f) => stat(join(dist, f))))
      const key = `${dist}:${sources.map((s) => `${s.size}@${s.mtimeMs}`).join(",")}`
      if (cached?.key === key) return cached.artifact
      const path = join(dist, "vm-agent.tar.gz")
      // The tarball's tree, as links (tar follows them): the bundles, the launcher, and the packages the
      // bundles load at run time by name (ssh2 and its dependencies: dockerode requires it at load).
      const stage = join(dist, "artifact")
      await rm(stage, { recursive: true, force: true })
      await mkdir(join(stage, "node_modules"), { recursive: true })
      for (const file of FILES) await symlink(join(dist, file), join(stage, file))
      await writeFile(join(stage, "sam"), LAUNCHER, { mode: 0o755 })
      for (const [name, dir] of await runtimePackages()) await symlink(dir, join(stage, "node_modules", name))
      const tar = await promisify(execFile)(
        "tar",
        [
          "--sort=name",
          "--mtime=@0",
          "--owner=0",
          "--group=0",
          "--numeric-owner",
          "--mode=a+rX,u+w,go-w",
          "--dereference",
          "-C",
          stage,
          "-cf",
          "-",
          "."
        ],
        { encoding: "buffer", maxBuffer: 256 * 1024 * 1024 }
      )
      // in the thread pool: a gateway making an artifact keeps answering (the Node runtime is ~100 MB)
      const gz = await gzipAsync(tar.stdout, { level: 9 })
      const sha256 = createHash("sha256").update(gz).digest("hex")
      const partial = `${path}.${process.pid}.partial`
      await writeFile(partial, gz, { mode: 0o644 })
      await rename(partial, path)
      const artifact: Artifact = { path, sha256, bytes: gz.length }
      cached = { key, artifact }
      return artifact
    },
    catch: (cause) =>
      new ArtifactError({
        message: `the vm-agent artifact cannot be made from ${dist} (run node infra/build.mjs): ${cause instanceof Error ? cause.message : cause}`
      })
  })

export const read = (artifact: Artifact) =>
  Effect.tryPromise({
    try: () => readFile(artifact.path),
    catch: (cause) => new ArtifactError({ message: `cannot read ${artifact.path}: ${cause}` })
  })

/** `uname -m` of the machines this control plane's own Node runs on. */
export const runtimeArch = () => ({ x64: "x86_64", arm64: "aarch64" })[process.arch as "x64" | "arm64"] ?? process.arch

let runtimeCached: { readonly key: string; readonly artifact: Artifact & { readonly arch: string } } | undefined

/**
 * The Node runtime a node installs when its distribution's is older than 20 (Ubuntu 24.04 and Debian 12
 * ship 18): this control plane's own `node` binary (>= 20.19 by design), as `bin/node` in a
 * reproducible tarball beside the build (`dist/node-runtime-<arch>.tar.gz`), for machines of its
 * architecture.
 */
export const runtime = (dist: string = process.env.SAM_ARTIFACT_DIST ?? defaultDist()) =>
  Effect.tryPromise({
    try: async () => {
      const binary = await realpath(process.execPath)
      const info = await stat(binary)
      const key = `${binary}:${info.size}@${info.mtimeMs}`
      if (runtimeCached?.key === key) return runtimeCached.artifact
      const stage = join(dist, "node-runtime")
      await rm(stage, { recursive: true, force: true })
      await mkdir(join(stage, "bin"), { recursive: true })
      await symlink(binary, join(stage, "bin", "node"))
      const tar = await promisify(execFile)(
        "tar",
        [
          "--sort=name",
          "--mtime=@0",
          "--owner=0",
          "--group=0",
          "--numeric-owner",
          "--dereference",
          "-C",
          stage,
          "-cf",
          "-",
          "bin"
        ],
        { encoding: "buffer", maxBuffer: 512 * 1024 * 1024 }
      )
      const gz = await gzipAsync(tar.stdout, { level: 6 })
      const arch = runtimeArch()
      const path = join(dist, `node-runtime-${arch}.tar.gz`)
      const partial = `${path}.${process.pid}.partial`
      await writeFile(partial, gz, { mode: 0o644 })
      await rename(partial, path)
      const artifact = { path, sha256: createHash("sha256").update(gz).digest("hex"), bytes: gz.length, arch }
      runtimeCached = { key, artifact }
      return artifact
    },
    catch: (cause) => new ArtifactError({ message: `the Node runtime artifact cannot be made: ${cause}` })
  })
