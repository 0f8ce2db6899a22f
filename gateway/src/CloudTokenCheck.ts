import { Context, Data, type Effect, type Redacted } from "effect"

export class CloudTokenRefused extends Data.TaggedError("CloudTokenRefused")<{
  /** `refused`: the provider says the token is not valid; `unreachable`: the provider did not answer */
  readonly reason: "refused" | "unreachable"
  readonly message: string
}> {}

/**
 * Checks a cloud API token with its provider before it is stored (ADR 0026); the control plane's
 * stack provides it (`infra`'s Hetzner client). A gateway without it cannot store cloud tokens.
 */
export class CloudTokenCheck extends Context.Tag("sam/CloudTokenCheck")<
  CloudTokenCheck,
  { readonly hetzner: (token: Redacted.Redacted<string>) => Effect.Effect<void, CloudTokenRefused> }
>() {}
