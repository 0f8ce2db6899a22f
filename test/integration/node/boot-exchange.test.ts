import { appendFile, readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { connect, credsAuthenticator } from "@nats-io/transport-node"
import { Accounts, Credentials, makeId, natsLayer, Subjects } from "@sam/bus"
import { BootTokens } from "@sam/gateway"
import { FeedClient } from "@sam/gateway/client"
import { Effect, Fiber, Redacted } from "effect"
import { describe, expect } from "vitest"
import * as NodeCli from "../../../infra/src/NodeCli.js"
import * as BootLogReport from "../../../vm-agent/src/node/BootLogReport.js"
import * as Bootstrap from "../../../vm-agent/src/node/Bootstrap.js"
import { LocalNodes } from "../../src/ControlPlaneHarness.js"
import { nextPermissionError, waitUntil } from "../../src/Env.js"
import { GatewayUrl, http, makeGatewayEnv, makeUser } from "../../src/GatewayHarness.js"
import { tempDir } from "../../src/TestStack.js"

/**
 * The bootstrap exchange is an unauthenticated HTTP surface (ADR 0027): a token works once, before it
 * expires, for its own node only, and returns that node's NATS credentials and nothing else; every
 * refusal is the same 401 and changes nothing; refusals are limited per address.
 */

const claims = (jwt: string) => JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString("utf8"))

/** A NATS user key pair, as the vm-agent makes one before its exchange. */
const newKey = () => Credentials.newUserKey()
const exchange = (body: Record<string, unknown>) =>
  http("POST", "/api/v1/node-boot/exchange", { body: { publicKey: newKey().publicKey, ...body } })

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
        const elsewhere = yield* exchange({ token, nodeId: makeId("node") })
        expect(elsewhere.status).toBe(401)
        expect((yield* sql`SELECT 1 FROM nodes WHERE id = ${nodeId}`).length).toBe(0)

        const key = newKey()
        const first = yield* http("POST", "/api/v1/node-boot/exchange", {
          body: {
            token,
            publicKey: key.publicKey,
            bootLog: [{ at: new Date().toISOString(), step: "boot", status: "started", message: "hello" }]
          }
        })
        expect(first.status).toBe(200)
        // A JWT for the key the node sent, and no seed: the seed never left the node.
        expect(Object.keys(first.body).sort()).toEqual(["expiresAt", "jwt", "natsUrl", "nodeId"])
        expect(JSON.stringify(first.body)).not.toMatch(/\bSU[A-Z2-7]{56}\b/)
        expect(first.body.nodeId).toBe(nodeId)
        // Over the gateway's own address: NATS over WebSocket at /nats (ADR 0027).
        expect(first.body.natsUrl).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/nats$/)
        const jwt = claims(first.body.jwt)
        expect(jwt.name).toContain(nodeId)
        expect(jwt.sub).toBe(key.publicKey)
        const creds = Redacted.value(Credentials.credsText(first.body.jwt, key.seed))
        const node = yield* sql<{ ownerId: string; provider: string; status: string }>`
          SELECT owner_id, provider, status FROM nodes WHERE id = ${nodeId}`
        expect(node[0]).toEqual({ ownerId: alice.userId, provider: "joined", status: "provisioning" })

        // What it got is that node's and no other's: another node's subjects are refused by the server.
        const { natsUrl } = yield* LocalNodes
        const nc = yield* Effect.promise(() =>
          connect({
            servers: natsUrl,
            authenticator: credsAuthenticator(new TextEncoder().encode(creds)),
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

        // Once: a replay with another key is refused the same way and changes nothing.
        const replay = yield* exchange({ token })
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
        const unknown = yield* exchange({ token: `sam_boot_${"x".repeat(43)}` })
        expect(unknown.status).toBe(401)
        const expired = yield* BootTokens.issueJoin(alice.userId, 60)
        yield* sql`UPDATE node_boot_tokens SET expires_at = now() - interval '1 second' WHERE node_id = ${expired.nodeId}`
        const late = yield* exchange({ token: Redacted.value(expired.token) })
        expect(late.status).toBe(401)
        const row = yield* sql<{
          usedAt: Date | null
        }>`SELECT used_at FROM node_boot_tokens WHERE node_id = ${expired.nodeId}`
        expect(row[0]?.usedAt).toBeNull()
        expect((yield* sql`SELECT 1 FROM nodes WHERE id = ${expired.nodeId}`).length).toBe(0)
        const malformed = yield* exchange({ token: "' OR 1=1 --" })
        expect(malformed.status).toBe(400)
        // A public key that is not a NATS user key (a seed, an account key) is a 400 and spends nothing.
        for (const publicKey of [Redacted.value(newKey().seed), `A${"A".repeat(55)}`, "U"]) {
          const bad = yield* http("POST", "/api/v1/node-boot/exchange", {
            body: { token: Redacted.value(expired.token), publicKey }
          })
          expect(bad.status).toBe(400)
          // (the refusal names the field, never the value: a seed sent by mistake is not echoed)
          expect(JSON.stringify(bad.body)).not.toMatch(/S[UA][A-Z2-7]{20,}|AAAAAAAAAA/)
        }
        // A cloud token for a node that was deleted meanwhile is refused.
        const nodeId = makeId("node")
        yield* sql`INSERT INTO nodes (id, provider, status, owner_id) VALUES (${nodeId}, 'hetzner', 'deleted', ${alice.userId})`
        const gone = yield* BootTokens.issue({ nodeId, ownerId: alice.userId, purpose: "cloud", provider: "hetzner" })
        const refused = yield* exchange({ token: Redacted.value(gone.token), nodeId })
        expect(refused.status).toBe(401)
      })
    )

    it.scoped("a lost answer: the same key asks again within 5 minutes; another key or a later repeat is refused", () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const alice = yield* makeUser("Alice")
        const issued = yield* BootTokens.issueJoin(alice.userId)
        const token = Redacted.value(issued.token)
        const key = newKey()
        const first = yield* http("POST", "/api/v1/node-boot/exchange", { body: { token, publicKey: key.publicKey } })
        expect(first.status).toBe(200)
        const spent = () =>
          sql<{ usedAt: Date; publicKey: string }>`
            SELECT used_at, public_key FROM node_boot_tokens WHERE node_id = ${issued.nodeId}`.pipe(
            Effect.map((rows) => rows[0])
          )
        const before = yield* spent()
        expect(before?.publicKey).toBe(key.publicKey)

        // The answer was lost: the vm-agent asks again with its kept key and gets a JWT for it; one node still.
        const again = yield* http("POST", "/api/v1/node-boot/exchange", {
          body: { token, nodeId: issued.nodeId, publicKey: key.publicKey }
        })
        expect(again.status).toBe(200)
        expect(again.body.nodeId).toBe(issued.nodeId)
        expect(claims(again.body.jwt).sub).toBe(key.publicKey)
        expect((yield* sql`SELECT 1 FROM nodes WHERE id = ${issued.nodeId}`).length).toBe(1)
        // The repeat keeps the first use's time: the window does not slide.
        expect((yield* spent())?.usedAt.getTime()).toBe(before?.usedAt.getTime())

        // Whoever else holds the spent token (user data, a shell's history) and sends another key: 401, nothing
        // changes.
        const thief = newKey()
        const stolen = yield* http("POST", "/api/v1/node-boot/exchange", {
          body: { token, publicKey: thief.publicKey }
        })
        expect(stolen.status).toBe(401)
        expect(yield* spent()).toEqual(before)

        // And what the first answer carried is useless without the node's seed: the server refuses that JWT
        // with another key.
        const { natsUrl } = yield* LocalNodes
        const refused = yield* Effect.either(
          Effect.tryPromise(() =>
            connect({
              servers: natsUrl,
              authenticator: credsAuthenticator(
                new TextEncoder().encode(Redacted.value(Credentials.credsText(first.body.jwt, thief.seed)))
              ),
              inboxPrefix: Subjects.nodeInboxPrefix(issued.nodeId),
              reconnect: false
            })
          )
        )
        expect(refused._tag).toBe("Left")
        expect(String(refused._tag === "Left" ? refused.left.error : "")).toMatch(/authoriz|authentic/i)
        // With the seed it works.
        const nc = yield* Effect.acquireRelease(
          Effect.promise(() =>
            connect({
              servers: natsUrl,
              authenticator: credsAuthenticator(
                new TextEncoder().encode(Redacted.value(Credentials.credsText(again.body.jwt, key.seed)))
              ),
              inboxPrefix: Subjects.nodeInboxPrefix(issued.nodeId)
            })
          ),
          (c) => Effect.promise(() => c.close())
        )
        yield* Effect.promise(() => nc.flush())

        // After the window (5 minutes from the first use) the same key is refused too.
        yield* sql`UPDATE node_boot_tokens SET used_at = now() - interval '301 seconds' WHERE node_id = ${issued.nodeId}`
        const late = yield* http("POST", "/api/v1/node-boot/exchange", { body: { token, publicKey: key.publicKey } })
        expect(late.status).toBe(401)
        // A deleted node's token is not exchanged again either, whatever the window.
        yield* sql`UPDATE node_boot_tokens SET used_at = now() WHERE node_id = ${issued.nodeId}`
        yield* sql`UPDATE nodes SET status = 'deleted' WHERE id = ${issued.nodeId}`
        const gone = yield* http("POST", "/api/v1/node-boot/exchange", { body: { token, publicKey: key.publicKey } })
        expect(gone.status).toBe(401)
      })
    )

    it.effect(
      "a cloud node's boot log is live: each line reaches its owner's feed as the boot posts it, before the exchange",
      () =>
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          const url = yield* GatewayUrl
          const alice = yield* makeUser("Alice")
          const nodeId = makeId("node")
          yield* sql`INSERT INTO nodes (id, provider, status, owner_id) VALUES (${nodeId}, 'hetzner', 'provisioning', ${alice.userId})`
          const issued = yield* BootTokens.issue({
            nodeId,
            ownerId: alice.userId,
            purpose: "cloud",
            provider: "hetzner"
          })
          const token = Redacted.value(issued.token)
          const seen: Array<{ seq?: number; message: string }> = []
          let open = false
          const feed = new FeedClient({
            baseUrl: url,
            token: alice.token,
            onFrame: (frame) => {
              if (frame.type === "hello") open = true
              if (frame.type === "event" && frame.eventType === "node.bootlog" && frame.id === nodeId)
                seen.push(...(frame.body as { entries: Array<{ seq?: number; message: string }> }).entries)
            }
          })
          yield* Effect.addFinalizer(() => Effect.sync(() => feed.close()))
          yield* waitUntil(
            "the feed open",
            Effect.sync(() => (open ? true : undefined)),
            { timeout: "10 seconds" }
          )
          const line = (seq: number) => ({
            seq,
            at: new Date().toISOString(),
            step: "boot",
            status: "info",
            message: `step ${seq}`
          })
          const messages = () => seen.map((e) => e.message)
          // As the boot script goes: each post is on the feed before the next, and before any exchange.
          for (const seq of [1, 2, 3]) {
            const r = yield* http("POST", "/api/v1/node-boot/log", { body: { token, nodeId, entries: [line(seq)] } })
            expect(r.body).toEqual({ stored: 1 })
            yield* waitUntil(
              `line ${seq} on the feed`,
              Effect.sync(() => (seen.length === seq ? true : undefined)),
              { timeout: "10 seconds" }
            )
          }
          expect(messages()).toEqual(["step 1", "step 2", "step 3"])
          expect(yield* sql`SELECT 1 FROM node_boot_tokens WHERE node_id = ${nodeId} AND used_at IS NULL`).toHaveLength(
            1
          )

          // The exchange brings the whole log again: only what was missing is stored and announced.
          const exchanged = yield* http("POST", "/api/v1/node-boot/exchange", {
            body: { token, nodeId, publicKey: newKey().publicKey, bootLog: [1, 2, 3, 4, 5].map(line) }
          })
          expect(exchanged.status).toBe(200)
          yield* waitUntil(
            "lines 4 and 5 on the feed",
            Effect.sync(() => (seen.length === 5 ? true : undefined)),
            {
              timeout: "10 seconds"
            }
          )
          expect(messages()).toEqual(["step 1", "step 2", "step 3", "step 4", "step 5"])
          const log = yield* http("GET", `/api/v1/nodes/${nodeId}/boot-log`, { token: alice.token })
          expect(log.body.entries.map((e: { seq: number }) => e.seq)).toEqual([1, 2, 3, 4, 5])
          // The first three reached the control plane before the exchange spent the token.
          const early = yield* sql<{ seq: number }>`
          SELECT l.seq FROM node_boot_log l JOIN node_boot_tokens t ON t.node_id = l.node_id
          WHERE l.node_id = ${nodeId} AND l.received_at < t.used_at ORDER BY l.seq`
          expect(early.map((r) => r.seq)).toEqual([1, 2, 3])
        }).pipe(Effect.scoped)
    )

    it.effect(
      "after its exchange, the connected vm-agent sends what its boot log file gains, until its node is gone",
      () =>
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          const alice = yield* makeUser("Alice")
          const nodeId = makeId("node")
          yield* sql`INSERT INTO nodes (id, provider, status, owner_id) VALUES (${nodeId}, 'hetzner', 'provisioning', ${alice.userId})`
          const issued = yield* BootTokens.issue({
            nodeId,
            ownerId: alice.userId,
            purpose: "cloud",
            provider: "hetzner"
          })
          const key = newKey()
          const line = (seq: number) => `${new Date().toISOString()}\tservice\tinfo\tline ${seq}\n`
          const dir = yield* Effect.promise(() => tempDir("sam-bootlog-report-"))
          const file = join(dir, "sam-boot.log")
          yield* Effect.promise(() => writeFile(file, line(1) + line(2)))
          const exchanged = yield* http("POST", "/api/v1/node-boot/exchange", {
            body: {
              token: Redacted.value(issued.token),
              nodeId,
              publicKey: key.publicKey,
              bootLog: Bootstrap.readBootLog(yield* Effect.promise(() => readFile(file, "utf8")))
            }
          })
          expect(exchanged.status).toBe(200)
          // The boot script writes on after the exchange (the token is spent: its posts would be refused).
          yield* Effect.promise(() => appendFile(file, line(3)))
          const { natsUrl } = yield* LocalNodes
          const nodeNats = natsLayer({
            servers: natsUrl,
            creds: Credentials.credsText(exchanged.body.jwt, key.seed),
            jsApiPrefix: Accounts.nodeJsApiPrefix,
            inboxPrefix: Subjects.nodeInboxPrefix(nodeId),
            name: "bootlog-report-test"
          })
          const report = yield* Effect.forkScoped(
            BootLogReport.run(nodeId, file, { for: "60 seconds", every: "100 millis" }).pipe(Effect.provide(nodeNats))
          )
          const seqs = () =>
            sql<{ seq: number }>`SELECT seq FROM node_boot_log WHERE node_id = ${nodeId} ORDER BY id`.pipe(
              Effect.map((rows) => rows.map((r) => r.seq))
            )
          const stored = (n: number) =>
            waitUntil(`${n} lines stored`, seqs().pipe(Effect.map((s) => (s.length >= n ? s : undefined))), {
              timeout: "15 seconds",
              every: "100 millis"
            })
          expect(yield* stored(3)).toEqual([1, 2, 3])
          yield* Effect.promise(() => appendFile(file, line(4)))
          expect(yield* stored(4)).toEqual([1, 2, 3, 4])
          // A node that is gone stores nothing more, and its vm-agent stops sending.
          yield* sql`UPDATE nodes SET status = 'deleted' WHERE id = ${nodeId}`
          yield* Effect.promise(() => appendFile(file, line(5)))
          yield* Fiber.join(report)
          expect(yield* seqs()).toEqual([1, 2, 3, 4])
        }).pipe(Effect.scoped)
    )

    it.effect("a token raced by several exchanges at once is used by exactly one", () =>
      Effect.gen(function* () {
        const alice = yield* makeUser("Alice")
        const issued = yield* BootTokens.issueJoin(alice.userId)
        const token = Redacted.value(issued.token)
        const results = yield* Effect.all(
          Array.from({ length: 6 }, () => exchange({ token })),
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
          const r = yield* exchange({ token: `sam_boot_${"y".repeat(43)}` })
          statuses.push(r.status)
          if (r.status === 429) expect(Number(r.headers.get("retry-after"))).toBeGreaterThan(0)
        }
        expect(statuses).toContain(429)
        expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(10)
        const alice = yield* makeUser("Alice")
        const good = yield* http("POST", "/api/v1/nodes/join-token", { token: alice.token })
        const blocked = yield* exchange({ token: good.body.token })
        expect(blocked.status).toBe(429)
      })
    )
  })
})
