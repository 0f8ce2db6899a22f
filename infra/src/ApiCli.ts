import { chmod, mkdir, writeFile } from "node:fs/promises"
import { dirname, join, resolve } from "node:path"
import * as Api from "@sam/bus/api"
import { Effect } from "effect"
import * as LocalClient from "./LocalClient.js"
import * as StackDefaults from "./StackDefaults.js"
import { StackError } from "./StackError.js"

export const out = (text: string) => Effect.sync(() => process.stdout.write(text))

/** `--name value` pairs, and the words that are neither a flag nor a flag's value. */
export const parseArgs = (args: ReadonlyArray<string>) => {
  const flags: Record<string, string | undefined> = {}
  const words: Array<string> = []
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string
    if (arg.startsWith("--")) {
      const next = args[i + 1]
      if (next === undefined || next.startsWith("--")) flags[arg.slice(2)] = "true"
      else {
        flags[arg.slice(2)] = next
        i++
      }
    } else words.push(arg)
  }
  return { flags, words }
}

export const usage = (step: string, message: string) =>
  Effect.fail(new StackError({ step, message: `usage: ${message}` }))

/**
 * A project as `--project` names it: its id, or its name (`sam project list` shows both), looked up among the
 * caller's projects. A name no project of theirs has, or several have, is an error that says so.
 */
export const projectIdOf = (api: LocalClient.ApiClient, value: string) =>
  Effect.gen(function* () {
    if (/^proj_[0-9a-z]+$/.test(value)) return value
    const { projects } = yield* api.call(Api.ProjectEndpoints.listProjects)
    const named = projects.filter((p) => p.name === value)
    if (named.length === 1) return named[0]!.id
    return yield* new StackError({
      step: "project",
      message:
        named.length === 0
          ? `no project of yours is named "${value}" (sam project list shows them, with their ids)`
          : `${named.length} of your projects are named "${value}" (${named.map((p) => p.id).join(", ")}): give its id`
    })
  })

/** Columns padded to their widest cell; `-` for a missing value. */
export const table = (rows: ReadonlyArray<ReadonlyArray<string | null | undefined>>) => {
  const cells = rows.map((row) => row.map((cell) => (cell === null || cell === undefined ? "-" : cell)))
  const widths: Array<number> = []
  for (const row of cells) {
    for (const [i, cell] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, cell.length)
  }
  return cells
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join("  ")
        .trimEnd()
    )
    .join("\n")
}

const print = (rows: ReadonlyArray<ReadonlyArray<string | null | undefined>>, none: string) =>
  out(rows.length <= 1 ? `${none}\n` : `${table(rows)}\n`)

const day = (iso: string | null) => (iso === null ? null : iso.slice(0, 16).replace("T", " "))

const project = (args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const api = yield* LocalClient.api()
    const { flags, words } = parseArgs(args)
    const [verb, id] = words
    const E = Api.ProjectEndpoints
    switch (verb) {
      case "create": {
        const repo = flags.repo
        // `--github <installationId>:<owner/name>`: a repository of one of my GitHub App installations
        const picked = flags.github === undefined ? undefined : /^(\d+):(.+)$/.exec(flags.github)
        if ((repo === undefined) === (picked === undefined) || picked === null) {
          return yield* usage(
            "project",
            "sam project create --repo <path or URL> | --github <installationId>:<owner/name> [--name N] [--branch B]"
          )
        }
        const source =
          picked === undefined
            ? { repoUrl: repo ?? "" }
            : { github: { installationId: Number(picked[1]), repository: picked[2] ?? "" } }
        const name = flags.name ?? (picked?.[2] ?? repo ?? "").split("/").filter(Boolean).pop() ?? "project"
        const created = yield* api.call(E.createProject, {
          body: { name, ...source, ...(flags.branch === undefined ? {} : { defaultBranch: flags.branch }) }
        })
        return yield* out(`${created.id}\n`)
      }
      case "list": {
        const { projects } = yield* api.call(E.listProjects)
        return yield* print(
          [["ID", "NAME", "ROLE", "REPOSITORY"], ...projects.map((p) => [p.id, p.name, p.role, p.repoUrl])],
          "no projects yet (sam project create --repo R)"
        )
      }
      case "get": {
        if (id === undefined) return yield* usage("project", "sam project get proj_…")
        const p = yield* api.call(E.getProject, { params: { projectId: id } })
        return yield* out(
          `${table([
            ["id", p.id],
            ["name", p.name],
            ["repository", p.repoUrl],
            ["github", p.githubRepository],
            ["default branch", p.defaultBranch],
            ["owner", p.ownerId],
            ["your role", p.role],
            ["created", day(p.createdAt)]
          ])}\n`
        )
      }
      case "members": {
        if (id === undefined) return yield* usage("project", "sam project members proj_…")
        const { members } = yield* api.call(Api.MemberEndpoints.listMembers, { params: { projectId: id } })
        return yield* print(
          [
            ["USER", "LOGIN", "NAME", "ROLE", "ADDED"],
            ...members.map((m) => [m.userId, m.login ?? m.githubLogin, m.displayName, m.role, day(m.addedAt)])
          ],
          "no members"
        )
      }
      default:
        return yield* usage(
          "project",
          "sam project create --repo R | --github ID:OWNER/NAME [--name N] [--branch B] | list | get|members proj_…"
        )
    }
  })

const token = (args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const api = yield* LocalClient.api()
    const { flags, words } = parseArgs(args)
    const [verb, arg] = words
    const E = Api.AuthEndpoints
    switch (verb) {
      case "create": {
        if (arg === undefined) return yield* usage("token", "sam token create NAME [--days N]")
        const days = flags.days === undefined ? undefined : Number(flags.days)
        const created = yield* api.call(E.createToken, {
          body: { name: arg, ...(days === undefined ? {} : { expiresInDays: days }) }
        })
        yield* Effect.sync(() =>
          process.stderr.write(
            `created ${created.id} "${created.name}"${created.expiresAt === null ? "" : `, expires ${day(created.expiresAt)}`}; ` +
              "the token is shown once, here (revoke it with: sam token revoke " +
              `${created.id}):\n`
          )
        )
        return yield* out(`${created.token}\n`)
      }
      case "list": {
        const { tokens } = yield* api.call(E.listTokens)
        return yield* print(
          [
            ["ID", "NAME", "CREATED", "EXPIRES", "LAST USED", "REVOKED"],
            ...tokens.map((t) => [
              t.id,
              t.name,
              day(t.createdAt),
              day(t.expiresAt),
              day(t.lastUsedAt),
              day(t.revokedAt)
            ])
          ],
          "no API tokens"
        )
      }
      case "revoke": {
        if (arg === undefined) return yield* usage("token", "sam token revoke tok_…")
        const revoked = yield* api.call(E.revokeToken, { params: { tokenId: arg } })
        return yield* out(`revoked ${revoked.id} "${revoked.name}"\n`)
      }
      default:
        return yield* usage("token", "sam token create NAME [--days N] | list | revoke tok_…")
    }
  })

/** `sam creds user`: NATS credentials bound to the CLI's API token (ADR 0011), and how to use them. */
const credsUser = (args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const { flags } = parseArgs(args)
    const { dataDir, natsPort } = StackDefaults.defaults()
    const file = resolve(flags.out ?? join(dataDir, "user.creds"))
    const hours = flags.hours === undefined ? undefined : Number(flags.hours)
    const api = yield* LocalClient.api()
    const minted = yield* api.call(Api.CredentialsEndpoints.mintNatsCredentials, {
      body: hours === undefined ? {} : { expiresInHours: hours }
    })
    yield* Effect.tryPromise({
      try: async () => {
        await mkdir(dirname(file), { recursive: true })
        await writeFile(file, minted.creds, { mode: 0o600 })
        await chmod(file, 0o600)
      },
      catch: (cause) => new StackError({ step: "creds", message: `cannot write ${file}: ${cause}`, cause })
    })
    const nats = `nats --server ${minted.natsUrl ?? `nats://127.0.0.1:${natsPort}`} --creds ${file} --inbox-prefix ${minted.inboxPrefix}`
    const p = minted.subjectPrefix
    yield* out(
      `wrote ${file} (expires ${day(minted.expiresAt)}; keep it secret; it stops working when this API token is revoked)\n` +
        `  ${nats} req ${p}.task.create '{"projectId":"proj_…","prompt":"say hi"}'\n` +
        `  ${nats} req ${p}.task.cancel '{"taskId":"task_…"}'\n` +
        `  ${nats} req ${p}.session.prompt '{"sessionId":"sess_…","prompt":"say more"}'\n` +
        `  ${nats} req ${p}.session.cancel '{"sessionId":"sess_…"}'\n`
    )
  })

const notifications = (args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const { flags } = parseArgs(args)
    const api = yield* LocalClient.api()
    const list = yield* api.call(Api.NotificationEndpoints.listNotifications, {
      query: flags.unread === undefined ? {} : { unread: "true" }
    })
    yield* out(`${list.unreadCount} unread\n`)
    return yield* print(
      [
        ["WHEN", "", "TYPE", "TITLE", "TASK", "SESSION"],
        ...list.notifications.map((n) => [
          day(n.createdAt),
          n.readAt === null ? "●" : "·",
          n.type,
          n.title,
          n.taskId,
          n.sessionId
        ])
      ],
      "no notifications"
    )
  })

const nodes = Effect.gen(function* () {
  const api = yield* LocalClient.api()
  const { nodes } = yield* api.call(Api.NodeEndpoints.listNodes)
  return yield* print(
    [
      ["ID", "PROVIDER", "STATUS", "HEALTH", "READY", "WORKSPACES", "LAST HEARTBEAT", "ERROR"],
      ...nodes.map((n) => [
        n.id,
        n.provider,
        n.status,
        n.health,
        n.ready ? "yes" : "no",
        `${n.activeWorkspaces}/${n.maxWorkspaces}`,
        day(n.lastHeartbeatAt),
        n.errorReason
      ])
    ],
    "no nodes (one starts with the first task)"
  )
})

const workspaces = (args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const { flags } = parseArgs(args)
    if (flags.project === undefined) return yield* usage("workspaces", "sam workspaces --project P")
    const api = yield* LocalClient.api()
    const { workspaces } = yield* api.call(Api.WorkspaceEndpoints.listWorkspaces, {
      params: { projectId: yield* projectIdOf(api, flags.project) }
    })
    return yield* print(
      [
        ["ID", "STATUS", "RUNTIME", "NODE", "TASK", "BRANCH", "CREATED", "ERROR"],
        ...workspaces.map((w) => [
          w.id,
          w.status,
          w.runtime,
          w.nodeId,
          w.taskId,
          w.branch,
          day(w.createdAt),
          w.errorReason
        ])
      ],
      "no workspaces"
    )
  })

/** The commands that are one API call and a printout. */
export const run = (command: string, args: ReadonlyArray<string>): Effect.Effect<void, StackError> => {
  switch (command) {
    case "project":
      return project(args)
    case "token":
      return token(args)
    case "creds":
      return credsUser(args.slice(1))
    case "notifications":
      return notifications(args)
    case "nodes":
      return nodes
    case "workspaces":
      return workspaces(args)
    default:
      return Effect.fail(new StackError({ step: "cli", message: `unknown command ${command}` }))
  }
}
