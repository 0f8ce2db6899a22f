import { stat } from "node:fs/promises"
import { isAbsolute, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { Effect } from "effect"
import { ProvisionError } from "./lifecycle.js"

/** A local path or `file://` URL as an absolute path that exists; other URLs unchanged (git fetches them). */
export const localPath = (repoUrl: string): string | undefined => {
  if (repoUrl.startsWith("file://")) return fileURLToPath(repoUrl)
  if (isAbsolute(repoUrl) || repoUrl.startsWith("./") || repoUrl.startsWith("../")) return resolve(repoUrl)
  return undefined
}

export const localRepository = (repoUrl: string) =>
  Effect.gen(function* () {
    const path = yield* Effect.try({
      try: () => localPath(repoUrl),
      catch: () => new ProvisionError({ step: "clone", message: `not a valid repository URL: ${repoUrl}` })
    })
    if (path === undefined) return repoUrl
    const found = yield* Effect.promise(() =>
      stat(path).then(
        (s) => s.isDirectory(),
        () => false
      )
    )
    if (!found) return yield* new ProvisionError({ step: "clone", message: `repository not found: ${path}` })
    return path
  })
