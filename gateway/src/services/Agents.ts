import { SqlClient } from "@effect/sql"
import { Api, makeId } from "@sam/bus"
import { SecretBox } from "@sam/sql"
import { Effect } from "effect"
import type { z } from "zod"
import { requireMember, requireOwner } from "../Access.js"
import { ApiError } from "../ApiError.js"
import type { Principal } from "../Auth.js"

type AgentKind = Api.Harness["id"]

const iso = (d: Date) => d.toISOString()

/** Sealing needs the master key; a gateway without one cannot store secrets, and says so (never a 500 with a trace). */
const sealed = (plaintext: string) =>
  SecretBox.seal(plaintext).pipe(
    Effect.mapError(
      (e) => new ApiError({ code: "unavailable", message: `secrets cannot be stored here: ${e.message}` })
    )
  )

export const catalog = () => ({
  agents: Object.values(Api.Harnesses).map((h) => ({
    id: h.id,
    name: h.name,
    package: h.package?.name ?? null,
    version: h.package?.version ?? null,
    credentialKinds: h.credentials.map((c) => ({ kind: c.kind, label: c.label })),
    models: [...h.models],
    permissionModes: h.modes === undefined ? [] : Api.PermissionMode.options
  }))
})

// ── credentials ───────────────────────────────────────────────────────────────────────────────

interface CredentialRow {
  readonly agent: AgentKind
  readonly kind: Api.CredentialKind
  readonly createdAt: Date
  readonly updatedAt: Date
}
const credentialView = (row: CredentialRow): Api.AgentCredentialView => ({
  agent: row.agent,
  kind: row.kind,
  hasValue: true,
  createdAt: iso(row.createdAt),
  updatedAt: iso(row.updatedAt)
})

/**
 * A task runs its agent with its submitter's credential (AgentLaunches.ts): one whose agent needs a credential the
 * submitter has not stored is refused at once, before a node is found for it (it failed on the node, after a local
 * node was started or a cloud server made for it). The node still refuses a start whose credential is gone since.
 */
export const requireAgentCredential = Effect.fn("Agents.requireCredential")(function* (
  userId: string,
  agent: AgentKind
) {
  const harness = Api.Harnesses[agent]
  if (harness.credentials.length === 0) return
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql`SELECT 1 FROM agent_credentials WHERE user_id = ${userId} AND agent = ${agent}`.pipe(
    Effect.orDie
  )
  if (rows.length > 0) return
  return yield* new ApiError({
    code: "invalid_state",
    message: `no ${harness.name} credential of yours to run it with: ${Api.addCredentialHint(agent)}`,
    details: { agent }
  })
})

export const listCredentials = Effect.fn("Agents.listCredentials")(function* (principal: Principal) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<CredentialRow>`
    SELECT agent, kind, created_at, updated_at FROM agent_credentials WHERE user_id = ${principal.userId}
    ORDER BY agent`.pipe(Effect.orDie)
  return { credentials: rows.map(credentialView) }
})

/** What can be checked offline: the kind is one the agent takes; a key or token is one line; an auth file is JSON. */
const validateCredential = (agent: AgentKind, kind: Api.CredentialKind, value: string) => {
  const harness = Api.Harnesses[agent]
  const bad = (message: string) => Effect.fail(new ApiError({ code: "invalid_body", message }))
  if (!harness.credentials.some((c) => c.kind === kind)) {
    const kinds = harness.credentials.map((c) => c.kind).join(", ")
    return bad(`${harness.name} takes ${kinds === "" ? "no credential" : `a credential of kind ${kinds}`}, not ${kind}`)
  }
  if (kind === "auth-file") {
    try {
      const parsed: unknown = JSON.parse(value)
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
        return bad("auth.json is not a JSON object")
    } catch {
      return bad("auth.json is not valid JSON")
    }
  } else if (!/^[\x21-\x7e]+$/.test(value.trim())) {
    return bad(`the ${kind} must be one line of printable characters without spaces`)
  }
  return Effect.void
}

export const setCredential = Effect.fn("Agents.setCredential")(function* (
  principal: Principal,
  agent: AgentKind,
  input: z.output<typeof Api.SetAgentCredentialRequest>
) {
  const value = input.kind === "auth-file" ? input.value : input.value.trim()
  yield* validateCredential(agent, input.kind, value)
  const box = yield* sealed(value)
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<CredentialRow>`
    INSERT INTO agent_credentials (user_id, agent, kind, sealed) VALUES (${principal.userId}, ${agent}, ${input.kind}, ${box})
    ON CONFLICT (user_id, agent) DO UPDATE SET kind = excluded.kind, sealed = excluded.sealed, updated_at = now()
    RETURNING agent, kind, created_at, updated_at`.pipe(Effect.orDie)
  return credentialView(rows[0]!)
})

export const deleteCredential = Effect.fn("Agents.deleteCredential")(function* (principal: Principal, agent: string) {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql`
    DELETE FROM agent_credentials WHERE user_id = ${principal.userId} AND agent = ${agent} RETURNING agent`.pipe(
    Effect.orDie
  )
  if (rows.length === 0)
    return yield* new ApiError({ code: "not_found", message: `you have no credential for ${agent}` })
  return { ok: true as const }
})

// ── profiles ──────────────────────────────────────────────────────────────────────────────────

interface ProfileRow {
  readonly id: string
  readonly projectId: string
  readonly name: string
  readonly agent: AgentKind
  readonly model: string | null
  readonly permissionMode: Api.PermissionMode
  readonly systemPromptAppend: string | null
  readonly taskMode: "task" | "conversation"
  readonly nodeProvider: Api.AgentProfile["nodeProvider"]
  readonly vmSize: Api.AgentProfile["vmSize"]
  readonly vmLocation: Api.AgentProfile["vmLocation"]
  readonly createdAt: Date
  readonly updatedAt: Date
}
const profileView = (row: ProfileRow): Api.AgentProfile => ({
  ...row,
  createdAt: iso(row.createdAt),
  updatedAt: iso(row.updatedAt)
})
const PROFILE_COLUMNS =
  "id, project_id, name, agent, model, permission_mode, system_prompt_append, task_mode, node_provider, vm_size, vm_location, created_at, updated_at"

/**
 * A profile of this project, after the membership check (for a `change`, the caller must own the project, ADR
 * 0047); another project's profile is `not_found`.
 */
export const requireProfile = Effect.fn("Agents.requireProfile")(function* (
  principal: Principal,
  projectId: string,
  profileId: string,
  intent: "read" | "change" = "read"
) {
  yield* intent === "change" ? requireOwner(principal, projectId) : requireMember(principal, projectId)
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<ProfileRow>`
    SELECT ${sql.literal(PROFILE_COLUMNS)} FROM agent_profiles WHERE id = ${profileId} AND project_id = ${projectId}`.pipe(
    Effect.orDie
  )
  const row = rows[0]
  if (row === undefined)
    return yield* new ApiError({ code: "not_found", message: `no agent profile ${profileId} in project ${projectId}` })
  return profileView(row)
})

const nameTaken = (name: string) =>
  new ApiError({ code: "conflict", message: `the project already has an agent profile named ${name}` })

export const listProfiles = Effect.fn("Agents.listProfiles")(function* (principal: Principal, projectId: string) {
  yield* requireMember(principal, projectId)
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<ProfileRow>`
    SELECT ${sql.literal(PROFILE_COLUMNS)} FROM agent_profiles WHERE project_id = ${projectId} ORDER BY name`.pipe(
    Effect.orDie
  )
  return { profiles: rows.map(profileView) }
})

export const createProfile = Effect.fn("Agents.createProfile")(function* (
  principal: Principal,
  projectId: string,
  input: z.output<typeof Api.AgentProfileInput>
) {
  yield* requireOwner(principal, projectId)
  const sql = yield* SqlClient.SqlClient
  const id = makeId("prof")
  const rows = yield* sql<ProfileRow>`
    INSERT INTO agent_profiles (id, project_id, created_by, name, agent, model, permission_mode, system_prompt_append, task_mode,
      node_provider, vm_size, vm_location)
    VALUES (${id}, ${projectId}, ${principal.userId}, ${input.name}, ${input.agent}, ${input.model},
      ${input.permissionMode}, ${input.systemPromptAppend}, ${input.taskMode}, ${input.nodeProvider}, ${input.vmSize},
      ${input.vmLocation})
    ON CONFLICT (project_id, name) DO NOTHING
    RETURNING ${sql.literal(PROFILE_COLUMNS)}`.pipe(Effect.orDie)
  if (rows[0] === undefined) return yield* nameTaken(input.name)
  return profileView(rows[0])
})

export const updateProfile = Effect.fn("Agents.updateProfile")(function* (
  principal: Principal,
  projectId: string,
  profileId: string,
  patch: z.output<typeof Api.AgentProfilePatch>
) {
  const current = yield* requireProfile(principal, projectId, profileId, "change")
  const next = { ...current, ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) }
  const sql = yield* SqlClient.SqlClient
  const clash = yield* sql`
    SELECT 1 FROM agent_profiles WHERE project_id = ${projectId} AND name = ${next.name} AND id <> ${profileId}`.pipe(
    Effect.orDie
  )
  if (clash.length > 0) return yield* nameTaken(next.name)
  const rows = yield* sql<ProfileRow>`
    UPDATE agent_profiles SET name = ${next.name}, agent = ${next.agent}, model = ${next.model},
      permission_mode = ${next.permissionMode}, system_prompt_append = ${next.systemPromptAppend},
      task_mode = ${next.taskMode}, node_provider = ${next.nodeProvider}, vm_size = ${next.vmSize},
      vm_location = ${next.vmLocation}, updated_at = now()
    WHERE id = ${profileId} RETURNING ${sql.literal(PROFILE_COLUMNS)}`.pipe(Effect.orDie)
  return profileView(rows[0]!)
})

export const deleteProfile = Effect.fn("Agents.deleteProfile")(function* (
  principal: Principal,
  projectId: string,
  profileId: string
) {
  yield* requireProfile(principal, projectId, profileId, "change")
  const sql = yield* SqlClient.SqlClient
  yield* sql`DELETE FROM agent_profiles WHERE id = ${profileId}`.pipe(Effect.orDie)
  return { ok: true as const }
})

// ── runtime variables and files ───────────────────────────────────────────────────────────────

/** Where runtime assets attach: a project's own (`profileId` null) or one of its profiles. */
export interface Owner {
  readonly projectId: string
  readonly profileId: string | null
}

const MAX_VARS = 150
const MAX_FILES = 50

/** Both levels' assets as shown: secret values masked (`value: null, hasValue: true`). */
export const runtimeConfig = Effect.fn("Agents.runtimeConfig")(function* (owner: Owner) {
  const sql = yield* SqlClient.SqlClient
  const vars = yield* sql<{ key: string; value: string; isSecret: boolean }>`
    SELECT env_key AS key, value, is_secret FROM runtime_env_vars
    WHERE project_id = ${owner.projectId} AND profile_id IS NOT DISTINCT FROM ${owner.profileId} ORDER BY env_key`.pipe(
    Effect.orDie
  )
  const files = yield* sql<{ path: string; content: string; isSecret: boolean }>`
    SELECT file_path AS path, content, is_secret FROM runtime_files
    WHERE project_id = ${owner.projectId} AND profile_id IS NOT DISTINCT FROM ${owner.profileId} ORDER BY file_path`.pipe(
    Effect.orDie
  )
  return {
    envVars: vars.map((v) => ({
      key: v.key,
      value: v.isSecret ? null : v.value,
      isSecret: v.isSecret,
      hasValue: true
    })),
    files: files.map((f) => ({
      path: f.path,
      content: f.isSecret ? null : f.content,
      isSecret: f.isSecret,
      hasValue: true
    }))
  } satisfies Api.RuntimeConfig
})

export const setEnv = Effect.fn("Agents.setEnv")(function* (
  owner: Owner,
  input: z.output<typeof Api.SetRuntimeEnvRequest>
) {
  const sql = yield* SqlClient.SqlClient
  const stored = input.isSecret ? yield* sealed(input.value) : input.value
  const count = yield* sql<{ n: number }>`
    SELECT count(*)::int AS n FROM runtime_env_vars
    WHERE project_id = ${owner.projectId} AND profile_id IS NOT DISTINCT FROM ${owner.profileId} AND env_key <> ${input.key}`.pipe(
    Effect.orDie
  )
  if ((count[0]?.n ?? 0) >= MAX_VARS)
    return yield* new ApiError({ code: "invalid_body", message: `at most ${MAX_VARS} runtime variables` })
  yield* sql`
    INSERT INTO runtime_env_vars (project_id, profile_id, env_key, value, is_secret)
    VALUES (${owner.projectId}, ${owner.profileId}, ${input.key}, ${stored}, ${input.isSecret})
    ON CONFLICT (project_id, coalesce(profile_id, ''), env_key)
    DO UPDATE SET value = excluded.value, is_secret = excluded.is_secret, updated_at = now()`.pipe(Effect.orDie)
  return yield* runtimeConfig(owner)
})

export const deleteEnv = Effect.fn("Agents.deleteEnv")(function* (owner: Owner, key: string) {
  if (!Api.RuntimeEnvKey.safeParse(key).success)
    return yield* new ApiError({ code: "invalid_params", message: "not a variable name" })
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    DELETE FROM runtime_env_vars
    WHERE project_id = ${owner.projectId} AND profile_id IS NOT DISTINCT FROM ${owner.profileId} AND env_key = ${key}`.pipe(
    Effect.orDie
  )
  return yield* runtimeConfig(owner)
})

export const setFile = Effect.fn("Agents.setFile")(function* (
  owner: Owner,
  input: z.output<typeof Api.SetRuntimeFileRequest>
) {
  const sql = yield* SqlClient.SqlClient
  const stored = input.isSecret ? yield* sealed(input.content) : input.content
  const count = yield* sql<{ n: number }>`
    SELECT count(*)::int AS n FROM runtime_files
    WHERE project_id = ${owner.projectId} AND profile_id IS NOT DISTINCT FROM ${owner.profileId} AND file_path <> ${input.path}`.pipe(
    Effect.orDie
  )
  if ((count[0]?.n ?? 0) >= MAX_FILES)
    return yield* new ApiError({ code: "invalid_body", message: `at most ${MAX_FILES} runtime files` })
  yield* sql`
    INSERT INTO runtime_files (project_id, profile_id, file_path, content, is_secret)
    VALUES (${owner.projectId}, ${owner.profileId}, ${input.path}, ${stored}, ${input.isSecret})
    ON CONFLICT (project_id, coalesce(profile_id, ''), file_path)
    DO UPDATE SET content = excluded.content, is_secret = excluded.is_secret, updated_at = now()`.pipe(Effect.orDie)
  return yield* runtimeConfig(owner)
})

export const deleteFile = Effect.fn("Agents.deleteFile")(function* (owner: Owner, path: string) {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    DELETE FROM runtime_files
    WHERE project_id = ${owner.projectId} AND profile_id IS NOT DISTINCT FROM ${owner.profileId} AND file_path = ${path}`.pipe(
    Effect.orDie
  )
  return yield* runtimeConfig(owner)
})
