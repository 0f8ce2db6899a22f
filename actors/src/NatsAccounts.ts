import { NatsAccounts as Accounts } from "@sam/bus"

/** SAM's NATS accounts (ADR 0016) are part of the contract: they live in bus, and are the same here. */
export const { NatsAccounts, make, layer, nodeCredsTtlSeconds, runNodeRenewals } = Accounts
export type NatsAccounts = Accounts.NatsAccounts
export type NatsAccountsOptions = Accounts.NatsAccountsOptions
