import { Context, Effect, Layer } from "effect"

/** Human progress lines for long operations (`sam up`); silent in tests. */
export class Progress extends Context.Tag("sam/Progress")<
  Progress,
  { readonly step: (line: string) => Effect.Effect<void>; readonly done: (line: string) => Effect.Effect<void> }
>() {}

export const console = Layer.succeed(Progress, {
  step: (line) => Effect.sync(() => process.stdout.write(`  ✓ ${line}\n`)),
  done: (line) => Effect.sync(() => process.stdout.write(`\n${line}\n`))
})

export const silent = Layer.succeed(Progress, { step: () => Effect.void, done: () => Effect.void })
