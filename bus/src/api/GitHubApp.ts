import { z } from "zod"
import { endpoint } from "./Endpoint.js"

/** GitHub's numeric installation id, as GitHub assigns it. */
export const GitHubInstallationId = z.coerce.number().int().positive().max(Number.MAX_SAFE_INTEGER)

export const GitHubInstallation = z.object({
  installationId: z.number().int().positive(),
  accountType: z.enum(["organization", "personal"]),
  accountName: z.string()
})
export type GitHubInstallation = z.infer<typeof GitHubInstallation>

export const GitHubInstallationList = z.object({
  installations: z.array(GitHubInstallation),
  /**
   * How the sync with GitHub went before the list was read: `done`; `skipped` when SAM holds no GitHub
   * token for the caller (sign in with GitHub once); `failed` when GitHub could not be asked (the list
   * is then what SAM already knew).
   */
  sync: z.enum(["done", "skipped", "failed"])
})

export const GitHubRepository = z.object({
  id: z.number().int().positive(),
  fullName: z.string(),
  name: z.string(),
  owner: z.string(),
  private: z.boolean(),
  defaultBranch: z.string()
})
export type GitHubRepository = z.infer<typeof GitHubRepository>

export const GitHubInstallationParams = z.object({ installationId: GitHubInstallationId })

/** What GitHub adds to the Setup URL; the installation is taken from GitHub (as the user), never from here. */
export const GitHubSetupQuery = z.object({
  installation_id: z.string().max(30).optional(),
  setup_action: z.string().max(30).optional()
})

export const GitHubWebhookAck = z.object({
  /** false when this delivery id was seen before: nothing was done again */
  fresh: z.boolean(),
  /** whether SAM acted on the event; other events are acknowledged and ignored */
  handled: z.boolean()
})

/** GitHub App installations and repositories (deployments with a GitHub App configured). */
export const GitHubAppEndpoints = {
  githubWebhook: endpoint({
    method: "POST",
    path: "/github/webhook",
    summary:
      "GitHub's webhook deliveries: `X-Hub-Signature-256` must verify against the webhook secret (401 otherwise); " +
      "a delivery id seen before is acknowledged without acting again",
    tag: "github",
    auth: false,
    response: GitHubWebhookAck
  }),
  installApp: endpoint({
    method: "GET",
    path: "/github/install",
    summary: "Install the GitHub App on an account or organisation: redirects to GitHub's install page",
    tag: "github",
    response: z.object({}),
    status: 302
  }),
  installSetup: endpoint({
    method: "GET",
    path: "/github/setup",
    summary:
      "GitHub's Setup URL after an install or update: syncs my installations with GitHub, then redirects to settings",
    tag: "github",
    query: GitHubSetupQuery,
    response: z.object({}),
    status: 302
  }),
  listInstallations: endpoint({
    method: "GET",
    path: "/github/installations",
    summary:
      "The GitHub App installations I may use: synced with GitHub as me first (organization installations " +
      "are added only once GitHub confirms my access)",
    tag: "github",
    response: GitHubInstallationList
  }),
  unlinkInstallation: endpoint({
    method: "DELETE",
    path: "/github/installations/:installationId",
    summary: "Stop using an installation (for me only; the installation itself stays)",
    tag: "github",
    params: GitHubInstallationParams,
    response: z.object({ unlinked: z.boolean() })
  }),
  listRepositories: endpoint({
    method: "GET",
    path: "/github/installations/:installationId/repositories",
    summary: "Repositories of one of my installations that I can access, as GitHub lists them for me",
    tag: "github",
    params: GitHubInstallationParams,
    response: z.object({ repositories: z.array(GitHubRepository) })
  })
}
