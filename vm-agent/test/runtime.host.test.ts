import { rm, stat } from "node:fs/promises"
import { join } from "node:path"
import { Option } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeHostRuntime } from "../src/runtime/HostRuntime.js"
import type { WorkspaceRuntimeService } from "../src/runtime/WorkspaceRuntime.js"
import { makeRepo, run, runtimeContract, spec, tempDir } from "./runtimeFixtures.js"

describe("host-process runtime", () => {
  let dir = ""
  let repo = ""
  let runtime: WorkspaceRuntimeService
  beforeAll(async () => {
    dir = await tempDir("sam-host-runtime-")
    repo = await makeRepo(join(dir, "repo"))
    runtime = makeHostRuntime({ dataDir: join(dir, "node") })
  })
  afterAll(() => rm(dir, { recursive: true, force: true }))

  const contract = runtimeContract({
    runtime: () => runtime,
    restarted: () => makeHostRuntime({ dataDir: join(dir, "node") }),
    repo: () => repo
  })

  it("keeps each workspace in a directory of the node's data dir, removed on delete", async () => {
    const info = await run(runtime.create(spec("ws_hostdir", `file://${repo}`)))
    expect(info.path).toBe(join(dir, "node", "workspaces", "ws_hostdir", "workspace"))
    expect(Option.isSome(await run(runtime.get("ws_hostdir")))).toBe(true)
    await run(runtime.delete("ws_hostdir"))
    await expect(stat(join(dir, "node", "workspaces", "ws_hostdir"))).rejects.toThrow(/ENOENT/)
  })

  contract.lifecycleTests()
})
