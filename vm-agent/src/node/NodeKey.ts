import { mkdir, readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Domain } from "@sam/bus"
import { Effect } from "effect"

export interface NodeKey {
  readonly seed: Uint8Array
  /** announced in every heartbeat: what the control plane seals a session's launch to */
  readonly publicKey: string
}

/**
 * The node's curve key pair (ADR 0024), kept in `<dataDir>/node.xkey` (0600, root's when the vm-agent is root) so a
 * launch sealed before a restart still opens after it, and a session reloads with its credential.
 */
export const loadNodeKey = (dataDir: string) =>
  Effect.promise(async (): Promise<NodeKey> => {
    const file = join(dataDir, "node.xkey")
    const existing = await readFile(file, "utf8").catch(() => undefined)
    if (existing !== undefined) {
      const seed = new TextEncoder().encode(existing.trim())
      return { seed, publicKey: Domain.AgentLaunch.nodeCurvePublicKey(seed) }
    }
    const made = Domain.AgentLaunch.newNodeCurve()
    await mkdir(dataDir, { recursive: true, mode: 0o700 })
    await writeFile(file, new TextDecoder().decode(made.seed), { mode: 0o600, flag: "wx" }).catch(async () => {
      // another start wrote it first: use that one
    })
    const stored = new TextEncoder().encode((await readFile(file, "utf8")).trim())
    return { seed: stored, publicKey: Domain.AgentLaunch.nodeCurvePublicKey(stored) }
  })
