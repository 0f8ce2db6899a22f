import { readFile, stat } from "node:fs/promises"
import { createServer } from "node:http"
import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { connect, credsAuthenticator } from "@nats-io/transport-node"
import { Subjects } from "@sam/bus"
import { BootTokens } from "@sam/gateway"
import { Effect, Redacted } from "effect"
import { describe, expect } from "vitest"
import * as Bootstrap from "../../../vm-agent/src/node/Bootstrap.js"
import { LocalNodes } from "../../src/ControlPlaneHarness.js"
import { GatewayUrl, makeGatewayEnv, makeUser } from "../../src/GatewayHarness.js"
import { tempDir } from "../../src/TestStack.js"

/**
 * The answer to a bootstrap exchange lost on the way (ADR 0027): the gateway did the exchange and spent the
 * token, but the machine never heard back. The vm-agent made its NATS key pair before the exchange and kept
 * the seed, so it asks again with the same key and gets a JWT for it: the machine is a node, not stranded.
 * The network between them is the only stand-in: a relay that drops the first exchange's answer.
 */
const lossyRelay = (target: string) =>
  Effect.acquireRelease(
    Effect.async<{ url: string; exchanges: () => number; close: () => void }>((resume) => {
      let exchanges = 0
      const server = createServer(async (req, res) => {
        const chunks: Array<Buffer> = []
        for await (const chunk of req) chunks.push(chunk as Buffer)
        const answer = await fetch(`${target}${req.url}`, {
          method: req.method ?? "GET",
          headers: { "content-type": req.headers["content-type"] ?? "application/json" },
          ...(chunks.length === 0 ? {} : { body: Buffer.concat(chunks) })
        })
        const body = Buffer.from(await answer.arrayBuffer())
        if (req.url === "/api/v1/node-boot/exchange" && ++exchanges === 1) {
          // The control plane answered; the machine never hears it.
          req.socket.destroy()
          return
        }
        res.writeHead(answer.status, { "content-type": answer.headers.get("content-type") ?? "application/json" })
        res.end(body)
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        const port = typeof address === "object" && address !== null ? address.port : 0
        resume(
          Effect.succeed({ url: `http://127.0.0.1:${port}`, exchanges: () => exchanges, close: () => server.close() })
        )
      })
    }),
    (relay) => Effect.sync(() => relay.close())
  )

describe("a lost exchange answer", () => {
  layer(makeGatewayEnv(), { excludeTestServices: true, timeout: 60_000 })("lost answer", (it) => {
    it.scoped("the vm-agent asks again with the key it kept and becomes its node", () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const alice = yield* makeUser("Alice")
        const issued = yield* BootTokens.issueJoin(alice.userId)
        const relay = yield* lossyRelay(yield* GatewayUrl)
        const stateDir = join(yield* Effect.promise(() => tempDir("sam-lost-answer-")), "node")

        const env = yield* Bootstrap.prepare({
          SAM_NODE_STATE_DIR: stateDir,
          SAM_BOOTSTRAP_URL: relay.url,
          SAM_BOOTSTRAP_TOKEN: Redacted.value(issued.token)
        })
        expect(relay.exchanges()).toBe(2)
        expect(env.SAM_NODE_ID).toBe(issued.nodeId)
        const credsFile = env.SAM_NATS_CREDS ?? ""
        expect(((yield* Effect.promise(() => stat(credsFile))).mode & 0o777).toString(8)).toBe("600")
        // The seed is in the creds file only now.
        expect(
          yield* Effect.promise(() =>
            stat(join(stateDir, "node.seed")).then(
              () => "kept",
              () => "gone"
            )
          )
        ).toBe("gone")
        // One node, its token spent once, for the key the machine holds.
        expect((yield* sql`SELECT 1 FROM nodes WHERE id = ${issued.nodeId}`).length).toBe(1)
        const [token] = yield* sql<{ publicKey: string; usedAt: Date | null }>`
          SELECT public_key, used_at FROM node_boot_tokens WHERE node_id = ${issued.nodeId}`
        expect(token?.usedAt).not.toBeNull()

        // What it keeps works: NATS takes it as that node.
        const { natsUrl } = yield* LocalNodes
        const creds = yield* Effect.promise(() => readFile(credsFile))
        const nc = yield* Effect.acquireRelease(
          Effect.promise(() =>
            connect({
              servers: natsUrl,
              authenticator: credsAuthenticator(new Uint8Array(creds)),
              inboxPrefix: Subjects.nodeInboxPrefix(issued.nodeId)
            })
          ),
          (c) => Effect.promise(() => c.close())
        )
        yield* Effect.promise(() => nc.flush())
        const jwt = /-----BEGIN NATS USER JWT-----\s*\n([^\n]+)\n/.exec(creds.toString())?.[1] ?? ""
        const claims = JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString("utf8"))
        expect(claims.sub).toBe(token?.publicKey)
      })
    )
  })
})
