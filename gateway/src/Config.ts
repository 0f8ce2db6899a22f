import type { Credentials } from "@sam/bus"
import { Context, type Redacted } from "effect"

export interface GitHubOAuth {
  readonly clientId: string
  readonly clientSecret: Redacted.Redacted<string>
  /** where users authorize: https://github.com (or a GitHub Enterprise host) */
  readonly webUrl: string
  /** the REST API: https://api.github.com */
  readonly apiUrl: string
  /** if set, only these GitHub logins may sign in */
  readonly allowedLogins?: ReadonlyArray<string>
}

export interface GatewayOptions {
  readonly host: string
  /** 0 picks a free port (tests) */
  readonly port: number
  /** the URL browsers reach the gateway on (OAuth redirects); defaults to http://host:port */
  readonly publicUrl?: string
  /** GitHub sign-in, for deployments; off when absent */
  readonly github?: GitHubOAuth
  /** the account signing key, to mint NATS credentials for programmatic clients */
  readonly signing?: Credentials.SigningAccount
  /** the NATS URL programmatic clients should connect to (told to them with their credentials) */
  readonly natsUrl?: string
}

/** The gateway's configuration, as its routes see it (`publicUrl` resolved once the port is bound). */
export class GatewayConfig extends Context.Tag("sam/GatewayConfig")<
  GatewayConfig,
  GatewayOptions & { readonly publicUrl: string }
>() {}
