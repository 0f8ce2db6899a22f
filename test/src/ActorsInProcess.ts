import { type Actor, ActorRuntime } from "@sam/actors"
import type { Nats, NatsError } from "@sam/bus"
import { Context, Effect, Layer, type Redacted } from "effect"
import { natsAdmin, sqlLayer } from "./Env.js"

/**
 * An actor runtime instance in this process with its own NATS connection (the shared stack's unless `nats` is
 * given) and pool, alive for the current scope.
 */
export const startRuntime = (
  databaseUrl: Redacted.Redacted<string>,
  kinds: ReadonlyArray<Actor.AnyActorKind>,
  options: ActorRuntime.RuntimeOptions,
  nats: Layer.Layer<Nats, NatsError> = natsAdmin(options.instanceId ?? "actors-test")
) =>
  Layer.build(ActorRuntime.layer(kinds, options).pipe(Layer.provide(Layer.merge(nats, sqlLayer(databaseUrl))))).pipe(
    Effect.map((context) => Context.get(context, ActorRuntime.ActorRuntime))
  )
