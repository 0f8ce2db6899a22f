import { constants } from "node:fs"
import { open, stat } from "node:fs/promises"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Config, Effect } from "effect"
import { ApiError } from "./ApiError.js"

/**
 * Who may create a project on a path of the control plane's machine (a local path or `file://`):
 * `owner` — only the local owner account of `sam up` (the default); `all` — any user (one person's
 * machine, or tests); `none` — nobody. Nodes clone the repository, so a local path reads files of
 * the machine the nodes run on with the vm-agent's rights: another user's checkout, for instance.
 */
export type LocalRepos = "owner" | "all" | "none"

/** `SAM_ALLOW_LOCAL_REPOS`, `owner` when unset. */
export const localReposConfig = Config.literal(
  "owner",
  "all",
  "none"
)("SAM_ALLOW_LOCAL_REPOS").pipe(Config.withDefault<LocalRepos>("owner"))

export type RepoLocation = { readonly _tag: "Local" } | { readonly _tag: "Remote" }

const refuse = (message: string) =>
  Effect.fail(new ApiError({ code: "invalid_body", message, details: [{ path: "repoUrl", message }] }))

const LOOPBACK = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])$/i
/** git's scp-like syntax `[user@]host:path` (no `//` after the colon, no slash before it). */
const SCP = /^(?:([^@/:\s]+)@)?([^@/:\s]+):(?!\/\/)(.+)$/

/**
 * Where a project's `repoUrl` points, or why it is refused. Accepted: `https://`, `ssh://`,
 * `git://`, the scp form `git@host:owner/repo.git`, `http://` to a loopback host only, and local
 * paths (absolute, or `file://`) as the caller's `LocalRepos` allows. Refused: git's remote helpers
 * (`ext::…`, `fd::…`), anything starting with `-` (it would be read as an option), and credentials
 * in the URL (they would be stored, shown to every member and logged by git). The message never
 * repeats the URL, which may hold a secret.
 */
export const classify = (repoUrl: string): Effect.Effect<RepoLocation, ApiError> => {
  if (/\p{Cc}/u.test(repoUrl)) return refuse("a repository URL has no control characters")
  if (repoUrl.startsWith("-")) return refuse("a repository URL cannot start with `-`")
  if (/^[A-Za-z][A-Za-z0-9+.-]*::/.test(repoUrl)) {
    return refuse("git remote helpers (`transport::address`, such as `ext::`) are not allowed")
  }
  if (repoUrl.startsWith("/")) return Effect.succeed({ _tag: "Local" })
  if (/\s/.test(repoUrl)) return refuse("a repository URL has no spaces")
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(repoUrl)?.[1]?.toLowerCase()
  if (scheme !== undefined) {
    let url: URL
    try {
      url = new URL(repoUrl)
    } catch {
      return refuse("the repository URL is not a valid URL")
    }
    if (scheme === "file") return Effect.succeed({ _tag: "Local" })
    if (!["https", "http", "ssh", "git"].includes(scheme)) {
      return refuse(`repository URLs may be https://, ssh://, git:// or git@host:path, not ${scheme}://`)
    }
    if (url.password !== "" || (url.username !== "" && scheme !== "ssh")) {
      return refuse(
        "remove the credentials from the repository URL: they would be stored and shown to every member; " +
          "SAM reaches a private repository with a token it issues (a GitHub repository through its GitHub App), " +
          "never with the nodes' own credentials"
      )
    }
    if (url.hostname === "" || url.hostname.startsWith("-")) return refuse("the repository URL needs a host")
    if (scheme === "http" && !LOOPBACK.test(url.hostname)) {
      return refuse("plain http:// is allowed only to this machine (localhost); use https://")
    }
    return Effect.succeed({ _tag: "Remote" })
  }
  const scp = SCP.exec(repoUrl)
  if (scp !== null) {
    const [, user, host] = scp
    if (host?.startsWith("-") || user?.startsWith("-")) return refuse("the repository host cannot start with `-`")
    if (user?.includes(":")) return refuse("remove the password from the repository URL")
    return Effect.succeed({ _tag: "Remote" })
  }
  return refuse("give the repository as a URL (https://…, git@host:path) or an absolute path")
}

/** Refuse a local repository to a caller the setting does not allow. */
export const checkLocal = (localRepos: LocalRepos, callerIsLocalOwner: boolean) =>
  localRepos === "all" || (localRepos === "owner" && callerIsLocalOwner)
    ? Effect.void
    : Effect.fail(
        new ApiError({
          code: "forbidden",
          message:
            localRepos === "none"
              ? "repositories on the control plane's machine (local paths, file://) are turned off here " +
                "(SAM_ALLOW_LOCAL_REPOS=none); give a remote URL"
              : "only the local owner account may create a project on a path of this machine " +
                "(SAM_ALLOW_LOCAL_REPOS=owner); give a remote URL"
        })
      )

/**
 * A local repository, as far as the control plane can tell without running git in a directory the caller chose:
 * the branch its HEAD names (`ref: refs/heads/<branch>` in `<path>/.git/HEAD`, or in `<path>/HEAD` for a bare
 * repository), undefined when HEAD names none (a detached HEAD, a `.git` file of a worktree). A project on a
 * local repository takes that branch as its default unless one is given (git's own default is `master` on many
 * machines). A path with neither `.git` nor a bare repository's HEAD is refused: the first task would fail at
 * its clone, and a mistyped path is better said at once.
 */
export const localRepository = (repoUrl: string): Effect.Effect<{ readonly branch: string | undefined }, ApiError> =>
  Effect.gen(function* () {
    const path = yield* Effect.try({
      try: () => (repoUrl.startsWith("file://") ? fileURLToPath(repoUrl) : repoUrl),
      catch: () => new ApiError({ code: "invalid_body", message: "not a valid file:// URL" })
    })
    const found = yield* Effect.promise(async () => {
      let repository = false
      for (const head of [join(path, ".git", "HEAD"), join(path, "HEAD")]) {
        const text = await readSmallFile(head)
        const branch =
          text === undefined ? undefined : /^ref: refs\/heads\/([A-Za-z0-9._/-]{1,255})\n?$/.exec(text)?.[1]
        if (branch !== undefined) return { repository: true, branch }
        repository ||= text !== undefined
      }
      // a worktree's or a submodule's `.git` is a file pointing at the repository
      return { repository: repository || (await isFile(join(path, ".git"))), branch: undefined }
    })
    if (!found.repository) {
      return yield* refuse(
        "no git repository at this path on this machine: give the directory of a checkout (with .git) or of a bare repository"
      )
    }
    return { branch: found.branch }
  })

const isFile = (path: string) =>
  stat(path).then(
    (s) => s.isFile(),
    () => false
  )

/**
 * The first 512 bytes of a regular file, else undefined. Opened without blocking, so a named pipe put where
 * HEAD should be does not hold the request (or one of libuv's few file threads) forever.
 */
const readSmallFile = async (file: string) => {
  const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK).catch(() => undefined)
  if (handle === undefined) return undefined
  try {
    if (!(await handle.stat()).isFile()) return undefined
    const buffer = Buffer.alloc(512)
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0)
    return buffer.subarray(0, bytesRead).toString("utf8")
  } catch {
    return undefined
  } finally {
    await handle.close().catch(() => {})
  }
}
