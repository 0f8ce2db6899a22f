import { chmod, chown, rm } from "node:fs/promises"
import { createServer, type Server } from "node:net"
import { Domain, type Nats } from "@sam/bus"
import { type Context, Effect, Redacted } from "effect"
import { remoteOf } from "../runtime/internal/gitHelper.js"

type NatsConnection = Context.Tag.Service<typeof Nats>["nc"]

/**
 * Repository access for workspaces (ADR 0028). The vm-agent asks the control plane for a short-lived token
 * to one workspace's repository on its own subject (`sam.agent.<nodeId>.git`) and keeps it in memory only:
 * never on disk, never in an agent's environment, never in a log. git in the workspace gets it through a
 * credential helper that asks this process over a unix socket of that workspace (only the workspace's user
 * may connect to it, and the socket answers for its own workspace alone), and only for the host of the
 * workspace's repository: a fetch from elsewhere gets nothing. A token is used until ten minutes before it
 * expires; after that the next ask gets a fresh one.
 */
export interface GitCredential {
  readonly username: string
  readonly token: Redacted.Redacted<string>
  readonly expiresAt: Date
  readonly defaultBranch: string
}

export type GitAccess =
  | { readonly _tag: "Granted"; readonly credential: GitCredential }
  /** the repository is not reached through SAM (a local path, a public URL without an installation) */
  | { readonly _tag: "None" }
  | { readonly _tag: "Refused"; readonly reason: string }

/** A token this close to its expiry is not handed out: a clone or push may take minutes. */
export const REFRESH_MARGIN_MS = 10 * 60_000

export interface GitCredentials {
  readonly access: (workspaceId: string) => Effect.Effect<GitAccess>
  /** answer the workspace's credential helper on `socketPath` (idempotent), for `repoUrl`'s host only */
  readonly serve: (
    workspaceId: string,
    socketPath: string,
    repoUrl: string,
    uid?: number
  ) => Effect.Effect<void, never, never>
  /** the token kept for the workspace is dropped: the next request asks the control plane (its task may have ended) */
  readonly dropToken: (workspaceId: string) => Effect.Effect<void>
  readonly forget: (workspaceId: string) => Effect.Effect<void>
  readonly close: () => Effect.Effect<void>
}

const parseAttributes = (text: string) =>
  Object.fromEntries(
    text
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line.includes("="))
      .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)] as const)
  )

export const makeGitCredentials = (nc: NatsConnection, nodeId: string, now = () => Date.now()): GitCredentials => {
  const cache = new Map<string, GitCredential>()
  const servers = new Map<string, Server>()
  /** bumped by each drop: an answer asked for before one is given, not kept */
  const drops = new Map<string, number>()

  const ask = (workspaceId: string) =>
    Effect.suspend(() => {
      const asked = drops.get(workspaceId) ?? 0
      return askNow(workspaceId, asked)
    })

  const askNow = (workspaceId: string, asked: number) =>
    Effect.tryPromise(() =>
      nc.request(Domain.GitAccess.gitAccessSubject(nodeId), JSON.stringify({ workspaceId }), { timeout: 10_000 })
    ).pipe(
      Effect.map((msg) => {
        let json: unknown
        try {
          json = msg.json()
        } catch {
          json = undefined
        }
        return Domain.GitAccess.GitAccessReply.safeParse(json)
      }),
      Effect.map((parsed): GitAccess => {
        if (!parsed.success) return { _tag: "Refused", reason: "the control plane's answer did not parse" }
        const reply = parsed.data
        if (!reply.ok) return reply.code === "none" ? { _tag: "None" } : { _tag: "Refused", reason: reply.error }
        const credential: GitCredential = {
          username: reply.username,
          token: Redacted.make(reply.token),
          expiresAt: new Date(reply.expiresAt),
          defaultBranch: reply.defaultBranch
        }
        // a drop while it was on its way (the task ended meanwhile): given to this asker, kept for no other
        if ((drops.get(workspaceId) ?? 0) === asked) cache.set(workspaceId, credential)
        return { _tag: "Granted", credential }
      }),
      Effect.catchAll((e) =>
        Effect.succeed<GitAccess>(
          // Nobody serves repository access (a control plane without the gateway): none is offered.
          String(e.error).includes("no responders")
            ? { _tag: "None" }
            : { _tag: "Refused", reason: `no answer from the control plane (${String(e.error)})` }
        )
      )
    )

  const access = (workspaceId: string) =>
    Effect.suspend(() => {
      const cached = cache.get(workspaceId)
      return cached !== undefined && cached.expiresAt.getTime() - now() > REFRESH_MARGIN_MS
        ? Effect.succeed<GitAccess>({ _tag: "Granted", credential: cached })
        : ask(workspaceId)
    })

  const answer = (workspaceId: string, repoUrl: string, request: string) =>
    Effect.gen(function* () {
      const [action = "", ...rest] = request.split("\n")
      if (action !== "get") return ""
      const asked = parseAttributes(rest.join("\n"))
      const remote = remoteOf(repoUrl)
      // git asks for the host it talks to: a token goes only to the repository's own host.
      if (remote === undefined || asked.protocol !== remote.protocol || asked.host !== remote.host) return ""
      const granted = yield* access(workspaceId)
      if (granted._tag !== "Granted") {
        if (granted._tag === "Refused")
          yield* Effect.logWarning(`workspace ${workspaceId}: no repository token (${granted.reason})`)
        return ""
      }
      return `username=${granted.credential.username}\npassword=${Redacted.value(granted.credential.token)}\n`
    })

  const serve = (workspaceId: string, socketPath: string, repoUrl: string, uid?: number) =>
    Effect.promise(async () => {
      if (servers.has(workspaceId)) return
      await rm(socketPath, { force: true })
      // half-open: the helper ends its side after the request and waits for the answer
      const server = createServer({ allowHalfOpen: true }, (socket) => {
        let input = ""
        socket.setEncoding("utf8")
        socket.setTimeout(30_000, () => socket.destroy())
        socket.on("data", (chunk: string) => {
          input += chunk
          if (input.length > 65_536) socket.destroy()
        })
        socket.on("error", () => {})
        socket.on("end", () => {
          Effect.runPromise(answer(workspaceId, repoUrl, input)).then(
            (reply) => socket.end(reply),
            () => socket.end("")
          )
        })
      })
      servers.set(workspaceId, server)
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject)
        server.listen(socketPath, () => resolve())
      })
      // Only the workspace's user (and root) may connect: another workspace's user cannot ask for this token.
      if (uid !== undefined) await chown(socketPath, uid, uid).catch(() => undefined)
      await chmod(socketPath, 0o600)
    }).pipe(
      Effect.catchAllDefect((defect) =>
        Effect.logWarning(`workspace ${workspaceId}: cannot serve git credentials on ${socketPath}: ${defect}`)
      )
    )

  /**
   * The workspace's task ended (its result reported) or its session stopped: the token kept for it is dropped, so
   * whatever asks next is answered by the control plane, which gives nothing for a task that ended.
   */
  const drop = (workspaceId: string) => {
    cache.delete(workspaceId)
    drops.set(workspaceId, (drops.get(workspaceId) ?? 0) + 1)
  }
  const dropToken = (workspaceId: string) => Effect.sync(() => drop(workspaceId))

  const forget = (workspaceId: string) =>
    Effect.sync(() => {
      drop(workspaceId)
      servers.get(workspaceId)?.close()
      servers.delete(workspaceId)
    })

  return {
    access,
    serve,
    dropToken,
    forget,
    close: () =>
      Effect.sync(() => {
        for (const server of servers.values()) server.close()
        servers.clear()
        cache.clear()
      })
  }
}
