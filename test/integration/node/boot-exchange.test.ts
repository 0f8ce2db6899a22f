import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { connect, credsAuthenticator } from "@nats-io/transport-node"
import { makeId, Subjects } from "@sam/bus"
import { BootTokens } from "@sam/gateway"
import { Effect, Redacted } from "effect"
import { describe, expect } from "vitest"
import * as NodeCli from "../../../infra/src/NodeCli.js"
import { LocalNodes } from "../../src/ControlPlaneHarness.js"
import { nextPermissionError } from "../../src/Env.js"
import { GatewayUrl, http, makeGatewayEnv, makeUser } from "../../src/GatewayHarness.js"

/**
 * The bootstrap exchange is an unauthenticated HTTP surface (ADR 0027): a token works once, before it
 * expires, for its own node only, and returns that node's NATS credentials and nothing else; every
 * refusal is the same 401 and changes nothing; refusals are limited per address.
 */

const claims = (creds: string) => {
  const jwt = /-----BEGIN NATS USER JWT-----\s*\n([^\n]+)\n/.exec(creds)?.[1] ?? ""
  return JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString("utf8"))
}

describe("the bootstrap exchange", () => {
  layer(makeGatewayEnv(), { excludeTestServices: true, timeout: 60_000 })("exchange", (it) => {
    it.effect("a join token: once, for its node only; the node is its user's", () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const alice = yield* makeUser("Alice")
        const bob = yield* makeUser("Bob")
        expect((yield* http("POST", "/api/v1/nodes/join-token")).status).toBe(401)
        const issued = yield* http("POST", "/api/v1/nodes/join-token", { token: alice.token })
        expect(issued.status).toBe(201)
        const { token, nodeId, command, samCommand } = issued.body
        expect(command).toContain("/api/v1/node-boot/boot.sh | sudo bash -s -- --url")
        expect(command).toContain(token)
        expect(samCommand).toMatch(/^sam node join http:\/\/127\.0\.0\.1:\d+ sam_boot_/)
        // Only the hash is stored.
        const stored = yield* sql<{
          tokenHash: Uint8Array
        }>`SELECT token_hash FROM node_boot_tokens WHERE node_id = ${nodeId}`
        expect(Buffer.from(stored[0]!.tokenHash).toString("utf8")).not.toContain(token)

        // Bound to its node: naming another node is refused and does not spend it.
        const elsewhere = yield* http("POST", "/api/v1/node-boot/exchange", { body: { token, nodeId: makeId("node") } })
        expect(elsewhere.status).toBe(401)
        expect((yield* sql`SELECT 1 FROM nodes WHERE id = ${nodeId}`).length).toBe(0)

        const first = yield* http("POST", "/api/v1/node-boot/exchange", {
          body: {
            token,
            bootLog: [{ at: new Date().toISOString(), step: "boot", status: "started", message: "hello" }]
          }
        })
        expect(first.status).toBe(200)
        expect(Object.keys(first.body).sort()).toEqual(["creds", "expiresAt", "natsUrl", "nodeId"])
        expect(first.body.nodeId).toBe(nodeId)
        // Over the gateway's own address: NATS over WebSocket at /nats (ADR 0027).
        expect(first.body.natsUrl).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/nats$/)
        const jwt = claims(first.body.creds)
        expect(jwt.name).toContain(nodeId)
        const node = yield* sql<{ ownerId: string; provider: string; status: string }>`
          SELECT owner_id, provider, status FROM nodes WHERE id = ${nodeId}`
        expect(node[0]).toEqual({ ownerId: alice.userId, provider: "joined", status: "provisioning" })

        // What it got is that node's and no other's: another node's subjects are refused by the server.
        const { natsUrl } = yield* LocalNodes
        const nc = yield* Effect.promise(() =>
          connect({
            servers: natsUrl,
            authenticator: credsAuthenticator(new TextEncoder().encode(first.body.creds)),
            inboxPrefix: Subjects.nodeInboxPrefix(nodeId)
          })
        )
        const other = makeId("node")
        const denied = nextPermissionError(nc.status())
        nc.publish(Subjects.heartbeat(other), "{}")
        expect(String((yield* denied).message)).toMatch(/publish/i)
        const deniedSub = nextPermissionError(nc.status())
        nc.subscribe(`sam.node.${other}.cmd.>`)
        expect(String((yield* deniedSub).message)).toMatch(/subscri/i)
        yield* Effect.promise(() => nc.close())

        // Once: a replay is refused the same way and changes nothing.
        const replay = yield* http("POST", "/api/v1/node-boot/exchange", { body: { token } })
        expect(replay.status).toBe(401)
        expect(replay.body).toEqual({ code: "unauthenticated", message: elsewhere.body.message })

        // Its boot log: the owner sees it, another user does not.
        const log = yield* http("GET", `/api/v1/nodes/${nodeId}/boot-log`, { token: alice.token })
        expect(log.body.entries).toMatchObject([{ step: "boot", status: "started", message: "hello" }])
        expect((yield* http("GET", `/api/v1/nodes/${nodeId}/boot-log`, { token: bob.token })).status).toBe(403)
      })
    )

    it.effect("an unknown, expired or malformed token is refused and changes nothing", () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const alice = yield* makeUser("Alice")
        const unknown = yield* http("POST", "/api/v1/node-boot/exchange", {
          body: { token: `sam_boot_${"x".repeat(43)}` }
        })
        expect(unknown.status).toBe(401)
        const expired = yield* BootTokens.issueJoin(alice.userId, 60)
        yield* sql`UPDATE node_boot_tokens SET expires_at = now() - interval '1 second' WHERE node_id = ${expired.nodeId}`
        const late = yield* http("POST", "/api/v1/node-boot/exchange", {
          body: { token: Redacted.value(expired.token) }
        })
        expect(late.status).toBe(401)
        const row = yield* sql<{
          usedAt: Date | null
        }>`SELECT used_at FROM node_boot_tokens WHERE node_id = ${expired.nodeId}`
        expect(row[0]?.usedAt).toBeNull()
        expect((yield* sql`SELECT 1 FROM nodes WHERE id = ${expired.nodeId}`).length).toBe(0)
        const malformed = yield* http("POST", "/api/v1/node-boot/exchange", { body: { token: "' OR 1=1 --" } })
        expect(malformed.status).toBe(400)
        // A cloud token for a node that was deleted meanwhile is refused.
        const nodeId = makeId("node")
        yield* sql`INSERT INTO nodes (id, provider, status, owner_id) VALUES (${nodeId}, 'hetzner', 'deleted', ${alice.userId})`
        const gone = yield* BootTokens.issue({ nodeId, ownerId: alice.userId, purpose: "cloud", provider: "hetzner" })
        const refused = yield* http("POST", "/api/v1/node-boot/exchange", {
          body: { token: Redacted.value(gone.token), nodeId }
        })
        expect(refused.status).toBe(401)
      })
    )

    it.effect("a token raced by several exchanges at once is used by exactly one", () =>
      Effect.gen(function* () {
        const alice = yield* makeUser("Alice")
        const issued = yield* BootTokens.issueJoin(alice.userId)
        const token = Redacted.value(issued.token)
        const results = yield* Effect.all(
          Array.from({ length: 6 }, () => http("POST", "/api/v1/node-boot/exchange", { body: { token } })),
          { concurrency: "unbounded" }
        )
        const statuses = results.map((r) => r.status)
        expect(statuses.filter((s) => s === 200)).toHaveLength(1)
        expect(statuses.every((s) => s === 200 || s === 401 || s === 429)).toBe(true)
      })
    )

    it.effect("join tokens hold places under the user's node cap from their issue until used or expired", () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const alice = yield* makeUser("Alice")
        const bob = yield* makeUser("Bob")
        const saved = process.env.SAM_MAX_NODES_PER_USER
        process.env.SAM_MAX_NODES_PER_USER = "2"
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            if (saved === undefined) delete process.env.SAM_MAX_NODES_PER_USER
            else process.env.SAM_MAX_NODES_PER_USER = saved
          })
        )
        const ask = (token: string) => http("POST", "/api/v1/nodes/join-token", { token })
        const first = yield* ask(alice.token)
        const second = yield* ask(alice.token)
        expect([first.status, second.status]).toEqual([201, 201])
        const third = yield* ask(alice.token)
        expect(third.status).toBe(409)
        expect(third.body.message).toMatch(/node cap is reached: 2 nodes and unused join tokens, at most 2/)
        expect((yield* sql`SELECT 1 FROM node_boot_tokens WHERE owner_id = ${alice.userId}`).length).toBe(2)
        // Another user's cap is their own.
        expect((yield* ask(bob.token)).status).toBe(201)
        // A used token is a node: still two. (What the exchange does, in SQL: earlier tests spent this address's
        // refusals.)
        yield* sql`UPDATE node_boot_tokens SET used_at = now() WHERE node_id = ${first.body.nodeId}`
        yield* sql`INSERT INTO nodes (id, provider, status, owner_id) VALUES (${first.body.nodeId}, 'joined', 'provisioning', ${alice.userId})`
        expect((yield* ask(alice.token)).status).toBe(409)
        // An expired token holds nothing.
        yield* sql`UPDATE node_boot_tokens SET expires_at = now() - interval '1 second'
          WHERE node_id = ${second.body.nodeId}`
        expect((yield* ask(alice.token)).status).toBe(201)
        // A deleted node gives its place back.
        yield* sql`UPDATE nodes SET status = 'deleted' WHERE id = ${first.body.nodeId}`
        expect((yield* ask(alice.token)).status).toBe(201)
        expect((yield* ask(alice.token)).status).toBe(409)
      }).pipe(Effect.scoped)
    )

    it.effect("`sam node token` prints the one-line command and the `sam node join` command", () =>
      Effect.gen(function* () {
        const url = yield* GatewayUrl
        const alice = yield* makeUser("Alice")
        const saved = { url: process.env.SAM_GATEWAY_URL, token: process.env.SAM_TOKEN }
        const printed: Array<string> = []
        const write = process.stdout.write.bind(process.stdout)
        yield* Effect.acquireUseRelease(
          Effect.sync(() => {
            process.env.SAM_GATEWAY_URL = url
            process.env.SAM_TOKEN = alice.token
            process.stdout.write = ((chunk: string) => printed.push(String(chunk)) > 0) as typeof process.stdout.write
          }),
          () => NodeCli.node(["token"]),
          () =>
            Effect.sync(() => {
              process.stdout.write = write
              if (saved.url === undefined) delete process.env.SAM_GATEWAY_URL
              else process.env.SAM_GATEWAY_URL = saved.url
              if (saved.token === undefined) delete process.env.SAM_TOKEN
              else process.env.SAM_TOKEN = saved.token
            })
        )
        const text = printed.join("")
        expect(text).toMatch(/join token for node node_\w+ \(one use, until /)
        expect(text).toContain(
          `curl -fsSL ${url}/api/v1/node-boot/boot.sh | sudo bash -s -- --url ${url} --token sam_boot_`
        )
        expect(text).toMatch(new RegExp(`sam node join ${url} sam_boot_[A-Za-z0-9_-]{43}`))
      })
    )

    it.effect("serves the artifact with its sha256, and the boot script", () =>
      Effect.gen(function* () {
        const sum = yield* http("GET", "/api/v1/node-boot/vm-agent.sha256")
        if (sum.status === 503) return // dist/ not built in this run: the boot tests build it
        expect(sum.status).toBe(200)
        const script = yield* http("GET", "/api/v1/node-boot/boot.sh")
        expect(script.status).toBe(200)
        expect(String(script.body)).toContain("sam-vm-agent.service")
      })
    )

    // Last: it leaves this address throttled.
    it.effect("refusals are limited per address: 429 with Retry-After, whatever the token", () =>
      Effect.gen(function* () {
        const statuses: Array<number> = []
        for (let i = 0; i < 12; i++) {
          const r = yield* http("POST", "/api/v1/node-boot/exchange", { body: { token: `sam_boot_${"y".repeat(43)}` } })
          statuses.push(r.status)
          if (r.status === 429) expect(Number(r.headers.get("retry-after"))).toBeGreaterThan(0)
        }
        expect(statuses).toContain(429)
        expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(10)
        const alice = yield* makeUser("Alice")
        const good = yield* http("POST", "/api/v1/nodes/join-token", { token: alice.token })
        const blocked = yield* http("POST", "/api/v1/node-boot/exchange", { body: { token: good.body.token } })
        expect(blocked.status).toBe(429)
      })
    )
  })
})
