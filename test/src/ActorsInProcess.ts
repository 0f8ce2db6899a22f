import { type Actor, ActorRuntime } from "@sam/actors"
import { Context, Effect, Layer, type Redacted } from "effect"
import { natsAdmin, sqlLayer } from "./Env.js"

/** An actor runtime instance in this process with its own NATS connection and pool, alive for the current scope. */
export const startRuntime = (
  databaseUrl: Redacted.Redacted<string>,
  kinds: ReadonlyArray<Actor.AnyActorKind>,
  options: ActorRuntime.RuntimeOptions
) =>
  Layer.build(
    ActorRuntime.layer(kinds, options).pipe(
      Layer.provide(Layer.merge(natsAdmin(options.instanceId ?? "actors-test"), sqlLayer(databaseUrl)))
    )
  ).pipe(Effect.map((context) => Context.get(context, ActorRuntime.ActorRuntime)))
