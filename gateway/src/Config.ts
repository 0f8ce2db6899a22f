import { Context, type Redacted } from "effect"
import type { FeedOptions } from "./feed/FeedConfig.js"
import type { GitHubAppOptions } from "./GitHubApp.js"
import type { ThrottleOptions } from "./LoginThrottle.js"
import type { LocalRepos } from "./RepoUrl.js"

export interface GitHubOAuth {
  readonly clientId: string
  readonly clientSecret: Redacted.Redacted<string>
  /** where users authorize: https://github.com (or a GitHub Enterprise host) */
  readonly webUrl: string
  /** the REST API: https://api.github.com */
  readonly apiUrl: string
  /** these GitHub logins may sign in (lower case) */
  readonly allowedLogins?: ReadonlyArray<string>
  /** active members of these GitHub organizations may sign in (lower case) */
  readonly allowedOrgs?: ReadonlyArray<string>
  /** any GitHub account may sign in (and gets a SAM account); off unless asked for */
  readonly allowAny?: boolean
}

export interface GatewayOptions {
  readonly host: string
  /** 0 picks a free port (tests) */
  readonly port: number
  /** the URL browsers reach the gateway on (OAuth redirects); defaults to http://host:port */
  readonly publicUrl?: string
  /** GitHub sign-in, for deployments; off when absent */
  readonly github?: GitHubOAuth
  /** the GitHub App (installations, webhooks, installation tokens), for deployments; off when absent */
  readonly githubApp?: GitHubAppOptions
  /** the NATS URL programmatic clients should connect to (told to them with their credentials) */
  readonly natsUrl?: string
  /** the NATS URL remote nodes connect to (`SAM_NODE_NATS_URL`); `natsUrl` when absent (ADR 0027) */
  readonly nodeNatsUrl?: string
  /** nats-server's WebSocket listener on loopback (`127.0.0.1:<port>`), served to remote nodes at `/nats` (ADR 0027) */
  readonly natsWebSocket?: string
  /** the URL remote nodes reach this gateway on for their boot (`SAM_NODE_PUBLIC_URL`); `publicUrl` when absent */
  readonly nodePublicUrl?: string
  /** the feed's limits over `SAM_FEED_*` and the defaults (tests) */
  readonly feed?: Partial<FeedOptions>
  /** who may create projects on local paths; `SAM_ALLOW_LOCAL_REPOS` (default `owner`) when absent */
  readonly localRepos?: LocalRepos
  /** password sign-in throttling over the defaults (tests) */
  readonly loginThrottle?: Partial<ThrottleOptions>
}

/** The gateway's configuration, as its routes see it (`publicUrl` resolved once the port is bound). */
export class GatewayConfig extends Context.Tag("sam/GatewayConfig")<
  GatewayConfig,
  GatewayOptions & { readonly publicUrl: string }
>() {}
