import { mkdir, readdir, rename, rm, stat } from "node:fs/promises"
import { homedir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import * as DockerApi from "./DockerApi.js"
import { printProgress } from "./DockerEngine.js"
import { ensureCommand, isRoot, run } from "./Host.js"
import { StackError } from "./StackError.js"

/** Bump when the package list below changes: a new version builds a new rootfs and image. */
export const VERSION = "2"
export const REPO = "sam-workspace"
export const TAG = `${REPO}:${VERSION}`
export const SUITE = "bookworm"
export const MIRROR = "http://deb.debian.org/debian"
export const PACKAGES = ["git", "ca-certificates", "bash", "coreutils", "procps"]

/** Left out of the image: package caches and lists, docs, man pages, translations (half its size, and what vfs copies per container where overlay2 cannot be had). */
export const EXCLUDES = [
  "./var/cache/apt/archives/*.deb",
  "./var/cache/apt/*.bin",
  "./var/lib/apt/lists/*_*",
  "./usr/share/doc/*",
  "./usr/share/man/*",
  "./usr/share/info/*",
  "./usr/share/locale/*"
]

export interface ImageOptions {
  readonly cacheDir?: string
  readonly onProgress?: (line: string) => void
}

/** `SAM_IMAGE_CACHE`, else /var/cache/sam for root, else ~/.cache/sam. */
export const defaultCacheDir = (env: NodeJS.ProcessEnv = process.env) =>
  env.SAM_IMAGE_CACHE ?? (isRoot() ? "/var/cache/sam" : join(homedir(), ".cache", "sam"))

export const rootfsTarball = (cacheDir: string) => join(cacheDir, `${REPO}-${VERSION}.tar`)

const exists = (path: string) =>
  Effect.promise(() =>
    stat(path).then(
      () => true,
      () => false
    )
  )

const fsStep = (what: string, f: () => Promise<unknown>) =>
  Effect.tryPromise({
    try: f,
    catch: (cause) => new StackError({ step: "image", message: `${what}: ${cause}`, cause })
  })

/**
 * The workspace root filesystem as a tarball in the cache: Debian bookworm (minbase) with git, built by
 * debootstrap from Debian's archive the first time (minutes), reused afterwards. Node is not in it: the
 * runtime mounts the host's node binary, which matches its glibc.
 */
export const ensureRootfs = Effect.fn("WorkspaceImage.ensureRootfs")(function* (options: ImageOptions = {}) {
  const onProgress = options.onProgress ?? printProgress
  const cacheDir = options.cacheDir ?? defaultCacheDir()
  const tarball = rootfsTarball(cacheDir)
  if (yield* exists(tarball)) return tarball
  yield* ensureCommand("debootstrap", "debootstrap", onProgress)
  if (!isRoot()) return yield* new StackError({ step: "image", message: "debootstrap needs root" })
  const rootfs = join(cacheDir, `${REPO}-${VERSION}.rootfs`)
  yield* fsStep(`cannot prepare ${cacheDir}`, async () => {
    await mkdir(cacheDir, { recursive: true })
    await rm(rootfs, { recursive: true, force: true })
  })
  onProgress(
    `building the workspace rootfs with debootstrap (${SUITE}, minbase + ${PACKAGES.join(",")}); takes minutes`
  )
  const started = Date.now()
  let count = 0
  yield* run(
    "image",
    "debootstrap",
    ["--variant=minbase", `--include=${PACKAGES.join(",")}`, SUITE, rootfs, MIRROR],
    (line) => {
      // debootstrap prints one line per package; show a heartbeat, not all of them
      if (/^I: (Retrieving|Validating|Extracting|Unpacking|Configuring) /.test(line) && ++count % 25 !== 0) return
      if (line.trim()) onProgress(`debootstrap: ${line.trim()}`)
    }
  )
  onProgress(`debootstrap done in ${Math.round((Date.now() - started) / 1000)} s; packing ${tarball}`)
  const excludes = EXCLUDES.map((pattern) => `--exclude=${pattern}`)
  yield* run("image", "tar", ["-C", rootfs, ...excludes, "-cf", `${tarball}.partial`, "."])
  yield* fsStep(`cannot store ${tarball}`, async () => {
    await rename(`${tarball}.partial`, tarball)
    await rm(rootfs, { recursive: true, force: true })
    const stale = (await readdir(cacheDir)).filter(
      (n) => n.startsWith(`${REPO}-`) && !n.startsWith(`${REPO}-${VERSION}.`)
    )
    for (const name of stale) await rm(join(cacheDir, name), { recursive: true, force: true })
  })
  return tarball
})

/** `sam-workspace:<VERSION>` exists in this engine: imported from the cached rootfs when it is not there yet. */
export const ensure = Effect.fn("WorkspaceImage.ensure")(function* (
  docker: DockerApi.DockerSocket,
  options: ImageOptions = {}
) {
  const onProgress = options.onProgress ?? printProgress
  if (yield* DockerApi.imageExists(docker, TAG)) return TAG
  const tarball = yield* ensureRootfs(options)
  onProgress(`importing ${tarball} as ${TAG}`)
  const started = Date.now()
  yield* DockerApi.importImage(docker, tarball, REPO, VERSION)
  onProgress(`imported ${TAG} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  return TAG
})
