import { readFile } from "node:fs/promises"
import * as Api from "@sam/bus/api"
import { Effect } from "effect"
import { agentCacheDir, installAgent, isInstalled } from "./AgentInstall.js"
import { out, parseArgs, projectIdOf, table, usage } from "./ApiCli.js"
import * as LocalClient from "./LocalClient.js"
import { StackError } from "./StackError.js"
import { AGENT_USAGE_LINES as USAGE_LINES } from "./Usage.js"

export { USAGE_LINES }

const isAgent = (id: string | undefined): id is Api.Harness["id"] => id !== undefined && id in Api.Harnesses

const readValue = (file: string | undefined) =>
  Effect.tryPromise({
    try: async () => {
      if (file !== undefined) return await readFile(file, "utf8")
      const chunks: Array<Buffer> = []
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
      return Buffer.concat(chunks).toString("utf8")
    },
    catch: (cause) => new StackError({ step: "agents", message: `cannot read the credential: ${cause}`, cause })
  })

const list = Effect.gen(function* () {
  const api = yield* LocalClient.api()
  const { credentials } = yield* api.call(Api.AgentEndpoints.listCredentials)
  const cache = agentCacheDir()
  const rows = Object.values(Api.Harnesses).map((h) => [
    h.id,
    h.name,
    h.package === undefined ? "built in" : `${h.package.name}@${h.package.version}`,
    isInstalled(h.id, cache) ? "yes" : "no",
    h.credentials.length === 0 ? "none needed" : (credentials.find((c) => c.agent === h.id)?.kind ?? "missing")
  ])
  return yield* out(`${table([["ID", "NAME", "PACKAGE", "INSTALLED", "YOUR CREDENTIAL"], ...rows])}\n`)
})

const install = (ids: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const wanted =
      ids.length > 0
        ? ids
        : Object.values(Api.Harnesses)
            .filter((h) => h.package)
            .map((h) => h.id)
    for (const id of wanted) {
      if (!isAgent(id)) return yield* usage("agents", `sam agents install [${Object.keys(Api.Harnesses).join("|")}]`)
      yield* out(`installing ${id}…\n`)
      const dir = yield* installAgent(id)
      yield* out(`${id}: ${dir ?? "built in"}\n`)
    }
  })

const credential = (verb: string | undefined, agent: string | undefined, flags: Record<string, string | undefined>) =>
  Effect.gen(function* () {
    if (!isAgent(agent)) return yield* usage("agents", "sam agents credential set|rm ID")
    const api = yield* LocalClient.api()
    if (verb === "rm") {
      yield* api.call(Api.AgentEndpoints.deleteCredential, { params: { agent } })
      return yield* out(`revoked your ${agent} credential\n`)
    }
    if (verb !== "set") return yield* usage("agents", "sam agents credential set|rm ID")
    const kind = Api.CredentialKind.safeParse(flags.kind ?? "api-key")
    if (!kind.success) return yield* usage("agents", "--kind api-key|oauth-token|auth-file")
    if (flags.file === undefined && process.stdin.isTTY)
      yield* out(`Paste your ${agent} ${kind.data}, then Ctrl-D (or give --file F):\n`)
    const value = yield* readValue(flags.file)
    if (value.trim() === "")
      return yield* new StackError({
        step: "agents",
        message: `no ${kind.data} given: ${flags.file === undefined ? "pipe it on stdin" : `${flags.file} is empty`} (sam agents credential set ${agent} [--file F])`
      })
    const saved = yield* api.call(Api.AgentEndpoints.setCredential, {
      params: { agent },
      body: { kind: kind.data, value: kind.data === "auth-file" ? value : value.trim() }
    })
    return yield* out(`stored your ${agent} ${saved.kind} (encrypted; updated ${saved.updatedAt})\n`)
  })

const profile = (verb: string | undefined, id: string | undefined, flags: Record<string, string | undefined>) =>
  Effect.gen(function* () {
    if (flags.project === undefined) return yield* usage("agents", "sam agents profile list|create|rm --project P …")
    const api = yield* LocalClient.api()
    const projectId = yield* projectIdOf(api, flags.project)
    const E = Api.AgentEndpoints
    if (verb === "list") {
      const { profiles } = yield* api.call(E.listProfiles, { params: { projectId } })
      return yield* out(
        `${table([
          ["ID", "NAME", "AGENT", "MODEL", "PERMISSIONS", "MODE", "NODE"],
          ...profiles.map((p) => [
            p.id,
            p.name,
            p.agent,
            p.model,
            p.permissionMode,
            p.taskMode,
            p.nodeProvider === "hetzner"
              ? `hetzner ${p.vmSize ?? "medium (default)"} ${p.vmLocation ?? "nbg1 (default)"}`
              : "local"
          ])
        ])}\n`
      )
    }
    if (verb === "rm" && id !== undefined) {
      yield* api.call(E.deleteProfile, { params: { projectId, profileId: id } })
      return yield* out(`deleted ${id}\n`)
    }
    if (verb !== "create" || flags.name === undefined || !isAgent(flags.agent))
      return yield* usage("agents", "sam agents profile create --project P --name N --agent ID [options]")
    const created = yield* api.call(E.createProfile, {
      params: { projectId },
      body: {
        name: flags.name,
        agent: flags.agent,
        ...(flags.model === undefined ? {} : { model: flags.model }),
        ...(flags.permission === undefined ? {} : { permissionMode: flags.permission as Api.PermissionMode }),
        ...(flags.mode === undefined ? {} : { taskMode: flags.mode as "task" | "conversation" }),
        ...(flags["prompt-append"] === undefined ? {} : { systemPromptAppend: flags["prompt-append"] }),
        // Checked by the gateway: a wrong value is its clear 400.
        ...(flags.node === undefined ? {} : { nodeProvider: flags.node as Api.AgentProfile["nodeProvider"] }),
        ...(flags.size === undefined ? {} : { vmSize: flags.size as Api.AgentProfile["vmSize"] }),
        ...(flags.location === undefined ? {} : { vmLocation: flags.location as Api.AgentProfile["vmLocation"] })
      }
    })
    return yield* out(`${created.id}\n`)
  })

const env = (verb: string | undefined, words: ReadonlyArray<string>, flags: Record<string, string | undefined>) =>
  Effect.gen(function* () {
    const [key, value] = words
    if (flags.project === undefined || key === undefined || (verb === "set" && value === undefined))
      return yield* usage("agents", "sam agents env set|rm --project P [--profile prof_…] KEY [VALUE] [--secret]")
    const api = yield* LocalClient.api()
    const projectId = yield* projectIdOf(api, flags.project)
    const E = Api.AgentEndpoints
    const profileId = flags.profile
    const config =
      verb === "rm"
        ? profileId === undefined
          ? yield* api.call(E.projectRuntime.deleteEnv, { params: { projectId, key } })
          : yield* api.call(E.profileRuntime.deleteEnv, { params: { projectId, profileId, key } })
        : profileId === undefined
          ? yield* api.call(E.projectRuntime.setEnv, {
              params: { projectId },
              body: { key, value: value!, isSecret: flags.secret === "true" }
            })
          : yield* api.call(E.profileRuntime.setEnv, {
              params: { projectId, profileId },
              body: { key, value: value!, isSecret: flags.secret === "true" }
            })
    return yield* out(
      `${table([["KEY", "VALUE"], ...config.envVars.map((v) => [v.key, v.isSecret ? "(secret)" : v.value])])}\n`
    )
  })

/** `sam agents …`: the catalog, installs, credentials, profiles and runtime variables (ADR 0024). */
export const agents = (args: ReadonlyArray<string>): Effect.Effect<void, StackError> => {
  const { flags, words } = parseArgs(args)
  const [verb, ...rest] = words
  const run = (() => {
    switch (verb) {
      case undefined:
      case "list":
        return list
      case "install":
        return install(rest)
      case "credential":
        return credential(rest[0], rest[1], flags)
      case "profile":
        return profile(rest[0], rest[1], flags)
      case "env":
        return env(rest[0], rest.slice(1), flags)
      default:
        return usage("agents", `\n${USAGE_LINES}`)
    }
  })()
  return (run as Effect.Effect<void, unknown>).pipe(
    Effect.mapError((e) =>
      e instanceof StackError
        ? e
        : new StackError({ step: "agents", message: e instanceof Error ? e.message : String(e), cause: e })
    )
  )
}
