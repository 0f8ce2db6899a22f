import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { fromEnv } from "../src/node/NodeConfig.js"

const dirs: Array<string> = []
afterAll(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))))

describe("a vm-agent's settings", () => {
  it("keep a stopped workspace's task branches in the data dir unless told where (ADR 0052)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sam-node-config-"))
    dirs.push(dir)
    await writeFile(join(dir, "node.creds"), "creds", { mode: 0o600 })
    const env = {
      SAM_NODE_ID: "node_abcdefghij0123456789",
      SAM_NATS_URL: "nats://127.0.0.1:4222",
      SAM_NATS_CREDS: join(dir, "node.creds"),
      SAM_NODE_DATA_DIR: join(dir, "data")
    }
    const joined = await Effect.runPromise(fromEnv(env))
    expect(joined.settings.branchDir).toBe(join(dir, "data", "branches"))
    const local = await Effect.runPromise(fromEnv({ ...env, SAM_NODE_BRANCH_DIR: join(dir, "elsewhere") }))
    expect(local.settings.branchDir).toBe(join(dir, "elsewhere"))
  })
})
