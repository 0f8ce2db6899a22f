import { createReadStream } from "node:fs"
import { request } from "node:http"
import { Effect } from "effect"
import { z } from "zod"
import { StackError } from "./StackError.js"

/** A Docker Engine API endpoint on a unix socket. */
export interface DockerSocket {
  readonly socketPath: string
}

interface Reply {
  readonly status: number
  readonly body: string
}

const call = (docker: DockerSocket, method: string, path: string, bodyFile?: string) =>
  Effect.async<Reply, StackError>((resume) => {
    const req = request(
      {
        socketPath: docker.socketPath,
        method,
        path,
        headers: bodyFile ? { "Content-Type": "application/x-tar", "Transfer-Encoding": "chunked" } : {}
      },
      (res) => {
        let body = ""
        res.setEncoding("utf8")
        res.on("data", (chunk: string) => {
          body = (body + chunk).slice(-8000)
        })
        res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, body })))
        res.on("error", (cause) => resume(Effect.fail(apiError(path, cause))))
      }
    )
    req.on("error", (cause) => resume(Effect.fail(apiError(path, cause))))
    if (bodyFile) createReadStream(bodyFile).pipe(req)
    else req.end()
    return Effect.sync(() => req.destroy())
  })

const apiError = (path: string, cause: unknown) =>
  new StackError({ step: "docker", message: `Docker API ${path}: ${String(cause)}`, cause })

/** True when the engine answers `/_ping` with OK. */
export const ping = (docker: DockerSocket) =>
  call(docker, "GET", "/_ping").pipe(
    Effect.map((reply) => reply.status === 200 && reply.body.trim() === "OK"),
    Effect.orElseSucceed(() => false)
  )

const Info = z.object({ Driver: z.string() })

/** The storage driver the engine chose (`overlay2` where the kernel and the data root allow it). */
export const storageDriver = (docker: DockerSocket) =>
  call(docker, "GET", "/info").pipe(
    Effect.flatMap((reply) =>
      Effect.try({
        try: () => Info.parse(JSON.parse(reply.body)).Driver,
        catch: (cause) => apiError("/info", `HTTP ${reply.status}: ${String(cause)}`)
      })
    )
  )

export const imageExists = (docker: DockerSocket, tag: string) =>
  call(docker, "GET", `/images/${encodeURIComponent(tag)}/json`).pipe(
    Effect.flatMap((reply) =>
      reply.status === 200
        ? Effect.succeed(true)
        : reply.status === 404
          ? Effect.succeed(false)
          : Effect.fail(apiError(`/images/${tag}/json`, `HTTP ${reply.status} ${reply.body}`))
    )
  )

/** `docker import` of a root filesystem tarball as `repo:tag`. */
export const importImage = (docker: DockerSocket, tarball: string, repo: string, tag: string) =>
  call(
    docker,
    "POST",
    `/images/create?fromSrc=-&repo=${encodeURIComponent(repo)}&tag=${encodeURIComponent(tag)}`,
    tarball
  ).pipe(
    Effect.flatMap((reply) =>
      reply.status === 200 && !reply.body.includes('"error"')
        ? Effect.void
        : Effect.fail(apiError("/images/create", `HTTP ${reply.status} ${reply.body}`))
    )
  )
