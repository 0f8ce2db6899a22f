import { existsSync } from "node:fs"
import { join } from "node:path"
import { layer } from "@effect/vitest"
import { ControlPlane } from "@sam/actors"
import { makeId } from "@sam/bus"
import { LocalProvider } from "@sam/infra"
import { Context, Effect, Either, Exit, Fiber, Layer, Scope } from "effect"
import { expect } from "vitest"
import { ControlPlaneEnv, LocalNodes } from "../../src/ControlPlaneHarness.js"
import { tempDir } from "../../src/TestStack.js"

layer(ControlPlaneEnv, { excludeTestServices: true, timeout: 60_000 })("the local provider, stopping", (it) => {
  it.effect("waits for a node start under way, which then writes nothing and starts no vm-agent", () =>
    Effect.gen(function* () {
      const { natsUrl } = yield* LocalNodes
      const dir = yield* Effect.promise(() => tempDir("sam-provider-"))
      const scope = yield* Scope.make()
      const built = yield* Layer.buildWithScope(LocalProvider.layer({ dataDir: dir, natsUrl, runtime: "host" }), scope)
      const provider = Context.get(built, ControlPlane.NodeProvider)
      const nodeId = makeId("node")
      const starting = yield* Effect.fork(Effect.either(provider.provision(nodeId)))
      // the start is under way (asking for the node's credentials) when the provider stops
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow()
      yield* Scope.close(scope, Exit.void)
      const result = yield* Fiber.join(starting)
      const running = yield* provider.list()
      // Before, the stop did not wait: the start wrote the node's credentials into a data directory about to be
      // removed, and could spawn a vm-agent that nothing would stop.
      expect(Either.isLeft(result) ? String(result.left) : "started").toMatch(/stopping/)
      expect(existsSync(join(dir, "nodes", nodeId))).toBe(false)
      expect(running).toEqual([])
    })
  )
})
