import { SqlClient } from "@effect/sql"
import { Api, Domain } from "@sam/bus"
import { SecretBox } from "@sam/sql"
import { Effect } from "effect"

type AgentLaunch = Domain.AgentLaunch.AgentLaunch

interface ProfileRow {
  readonly id: string
  readonly model: string | null
  readonly permissionMode: Api.PermissionMode
  readonly systemPromptAppend: string | null
}

interface AssetRow {
  readonly profileId: string | null
  readonly name: string
  readonly value: string
  readonly isSecret: boolean
}

/**
 * The runtime variables or files of a project and one of its profiles, merged: the project's first, then the
 * profile's, so the profile wins on the same key or path and what only one of them has survives (sam-protocols §8).
 */
export const mergeAssets = (rows: ReadonlyArray<AssetRow>, profileId: string | null) => {
  const merged = new Map<string, AssetRow>()
  for (const row of rows.filter((r) => r.profileId === null)) merged.set(row.name, row)
  if (profileId !== null) for (const row of rows.filter((r) => r.profileId === profileId)) merged.set(row.name, row)
  return [...merged.values()]
}

const reveal = (row: AssetRow) => (row.isSecret ? SecretBox.open(row.value) : Effect.succeed(row.value))

/** What `launchQuery` returns: one row, its parts as JSON (keys named as the fields are). */
interface LaunchRow {
  readonly profile: ProfileRow | null
  readonly env: ReadonlyArray<AssetRow> | null
  readonly files: ReadonlyArray<AssetRow> | null
  readonly credentials: ReadonlyArray<{ readonly kind: Api.CredentialKind; readonly sealed: string }> | null
}

/**
 * Everything a launch reads, in one statement (issue 12: it is on the way to a task's first output, inside the
 * session's open, and five statements one after another cost four round trips more): the task's profile in this
 * project, the project's and that profile's runtime variables and files, and the submitter's stored credential
 * for the agent when the harness takes one.
 */
const launchQuery = (
  sql: SqlClient.SqlClient,
  input: { readonly taskId: string | undefined; readonly projectId: string; readonly agent: string },
  withCredential: boolean
) => {
  const taskId = input.taskId ?? null
  const asset = (table: "runtime_env_vars" | "runtime_files", name: string, value: string) =>
    sql`(SELECT json_agg(json_build_object('profileId', a.profile_id, 'name', a.${sql(name)},
          'value', a.${sql(value)}, 'isSecret', a.is_secret))
        FROM ${sql(table)} a
        WHERE a.project_id = ${input.projectId} AND (a.profile_id IS NULL OR a.profile_id = (SELECT id FROM profile)))`
  return sql<LaunchRow>`
    WITH profile AS (
      SELECT p.id, p.model, p.permission_mode, p.system_prompt_append
      FROM task_agent_profiles tp JOIN agent_profiles p ON p.id = tp.profile_id
      WHERE tp.task_id = ${taskId} AND p.project_id = ${input.projectId}
      LIMIT 1)
    SELECT
      (SELECT json_build_object('id', id, 'model', model, 'permissionMode', permission_mode,
        'systemPromptAppend', system_prompt_append) FROM profile) AS profile,
      ${asset("runtime_env_vars", "env_key", "value")} AS env,
      ${asset("runtime_files", "file_path", "content")} AS files,
      (SELECT json_agg(json_build_object('kind', c.kind, 'sealed', c.sealed))
        FROM agent_credentials c JOIN tasks t ON t.created_by = c.user_id
        WHERE ${withCredential} AND t.id = ${taskId} AND c.agent = ${input.agent}) AS credentials`
}

/**
 * What the agent of a task's session starts with, resolved in the control plane so the node gets one payload
 * (ADR 0024): the submitter's credential for the agent (as its variable, or its file in the workspace user's home),
 * the project's and the task's profile's runtime variables and files, and the profile's model, mode and prompt
 * addition. A missing credential is not an error here: the launch says why, and the node refuses the start with
 * that reason, which fails the task. Nothing of it is logged.
 */
export const resolveLaunch = Effect.fn("AgentLaunches.resolve")(function* (input: {
  readonly taskId: string | undefined
  readonly projectId: string
  readonly agent: Domain.NodeProtocol.AgentKind
}) {
  const sql = yield* SqlClient.SqlClient
  const harness = Api.Harnesses[input.agent]
  const found = (yield* launchQuery(sql, input, harness.credentials.length > 0))[0]
  const profile = found?.profile ?? undefined
  const profileId = profile?.id ?? null
  const envRows = found?.env ?? []
  const fileRows = found?.files ?? []

  const env: Record<string, string> = {}
  for (const row of mergeAssets(envRows, profileId)) env[row.name] = yield* reveal(row)
  const files: Array<{ path: string; content: string }> = []
  for (const row of mergeAssets(fileRows, profileId)) files.push({ path: row.name, content: yield* reveal(row) })

  let unavailable: string | undefined
  if (harness.credentials.length > 0) {
    const stored = found?.credentials ?? []
    const credential = stored[0]
    const spec = harness.credentials.find((c) => c.kind === credential?.kind)
    if (credential === undefined || spec === undefined) {
      unavailable = `no ${harness.name} credential for the user who submitted this task: ${Api.addCredentialHint(input.agent)}`
    } else {
      const value = yield* SecretBox.open(credential.sealed)
      // The credential wins over a runtime variable of the same name.
      if (spec.env !== undefined) env[spec.env] = value
      if (spec.file !== undefined) files.push({ path: spec.file, content: value })
    }
  }
  const sessionMode = profile === undefined ? undefined : harness.modes?.[profile.permissionMode]
  return {
    env,
    files,
    ...(profile?.model ? { model: profile.model } : {}),
    ...(sessionMode === undefined ? {} : { sessionMode }),
    ...(profile?.systemPromptAppend ? { systemPromptAppend: profile.systemPromptAppend } : {}),
    ...(unavailable === undefined ? {} : { unavailable })
  } satisfies AgentLaunch
})

/**
 * The sealed launch for `session.start`, or nothing for a demo session without runtime assets. A node that has not
 * announced its xkey gets no launch; it refuses a real agent without one.
 */
export const sealedLaunch = (
  input: Parameters<typeof resolveLaunch>[0] & { readonly xkey: string | undefined }
): Effect.Effect<Domain.AgentLaunch.SealedLaunch | undefined, never, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const launch = yield* resolveLaunch(input).pipe(
      Effect.catchTag("SecretBoxError", (e) =>
        Effect.succeed({ env: {}, files: [], unavailable: `the agent's secrets cannot be opened: ${e.message}` })
      )
    )
    const empty =
      Object.keys(launch.env).length === 0 &&
      launch.files.length === 0 &&
      !("model" in launch) &&
      !("sessionMode" in launch) &&
      !("systemPromptAppend" in launch) &&
      !("unavailable" in launch)
    if ((input.agent === "demo" && empty) || input.xkey === undefined) return undefined
    return Domain.AgentLaunch.sealLaunch(launch, input.xkey)
  }).pipe(Effect.orDie)

export type Launches = (
  input: Parameters<typeof sealedLaunch>[0]
) => Effect.Effect<Domain.AgentLaunch.SealedLaunch | undefined>

/** `sealedLaunch` with the SQL client taken once, for an actor's handler. */
export const launches = () =>
  Effect.map(
    SqlClient.SqlClient,
    (sql): Launches =>
      (input) =>
        sealedLaunch(input).pipe(Effect.provideService(SqlClient.SqlClient, sql))
  )
