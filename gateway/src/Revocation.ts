import { Nats, NatsAccounts, Subjects } from "@sam/bus"
import { Context, Effect, Layer, Option } from "effect"
import { z } from "zod"
import { Feed } from "./feed/Feed.js"

/** What was revoked: one credential (an API token or a sign-in session) of a user, or all of them. */
export const Revoked = z.object({
  userId: z.string().min(1),
  /** absent: every credential of the user (the user was removed) */
  credentialId: z.string().min(1).optional(),
  reason: z.string().max(200)
})
export type Revoked = z.infer<typeof Revoked>

/**
 * What must happen at once when a credential stops being valid, beyond the row that says so: its
 * open feed connections close (4001) on this gateway now, and on every other gateway as soon as
 * they get the `sam.gw.revoked` message. Requests need nothing: each one looks its credential up.
 */
export class Revocation extends Context.Tag("sam/Revocation")<
  Revocation,
  { readonly revoked: (target: Revoked) => Effect.Effect<void> }
>() {}

const tell = (nc: Context.Tag.Service<Nats>["nc"], target: Revoked) =>
  Effect.try(() => nc.publish(Subjects.gatewayRevoked, JSON.stringify(target))).pipe(
    Effect.catchAll((error) => Effect.logWarning("revocation: could not tell the gateways", error))
  )

/**
 * Tell every gateway that these credentials (sign-in sessions) ended, from a process that is no gateway
 * (`sam owner password`): each closes their feed connections. Without the bus nothing is told; the
 * connections then close at their next periodic check. API tokens go through `Revocation.revoked`, which
 * also revokes their NATS credentials.
 */
export const announce = Effect.fn("Revocation.announce")(function* (targets: ReadonlyArray<Revoked>) {
  const nats = yield* Effect.serviceOption(Nats)
  if (Option.isNone(nats) || targets.length === 0) return
  const { nc } = nats.value
  for (const target of targets) yield* tell(nc, target)
  yield* Effect.promise(() => nc.flush().catch(() => undefined))
})

/** Needs the feed (this gateway's connections) and the bus; the subscription ends with the scope. */
export const layer = Layer.scoped(
  Revocation,
  Effect.gen(function* () {
    const { nc } = yield* Nats
    const { fanout } = yield* Feed
    const accounts = yield* Effect.serviceOption(NatsAccounts.NatsAccounts)
    const closeHere = (target: Revoked) => fanout.closeCredential(target, target.reason)
    yield* Effect.acquireRelease(
      Effect.sync(() =>
        nc.subscribe(Subjects.gatewayRevoked, {
          callback: (error, msg) => {
            if (error !== null) return
            let json: unknown
            try {
              json = msg.json()
            } catch {
              return
            }
            const parsed = Revoked.safeParse(json)
            if (parsed.success) closeHere(parsed.data)
          }
        })
      ),
      (sub) => Effect.sync(() => sub.unsubscribe())
    )
    yield* Effect.promise(() => nc.flush())

    /** The revocation hook: call it after the revocation is committed. */
    const revoked = Effect.fn("Revocation.revoked")(function* (target: Revoked) {
      const closed = closeHere(target)
      yield* Effect.annotateCurrentSpan("closed", closed)
      // Other gateways; this one gets its own message too, and closing twice is a no-op.
      yield* tell(nc, target)
      // NATS credentials minted with an API token live in that token's own account (ADR 0016):
      // revoke its users at the server, which closes their connections now.
      if (Option.isSome(accounts)) {
        const nats =
          target.credentialId === undefined
            ? accounts.value.revokeClientsOf(target.userId)
            : target.credentialId.startsWith("tok_")
              ? accounts.value.revokeClient(target.credentialId)
              : Effect.succeed(0)
        yield* nats.pipe(
          Effect.catchAll((error) =>
            Effect.logError(
              `revocation: the NATS credentials of ${target.credentialId ?? target.userId} stay valid until they expire`,
              error
            )
          )
        )
      }
    })
    return { revoked }
  })
)
