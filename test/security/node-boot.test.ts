import { execFileSync } from "node:child_process"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { connect, credsAuthenticator } from "@nats-io/transport-node"
import { Api, Credentials, Domain, makeId, Subjects } from "@sam/bus"
import { BootTokens } from "@sam/gateway"
import { Effect, Redacted } from "effect"
import { describe, expect } from "vitest"
import { LocalNodes } from "../src/ControlPlaneHarness.js"
import { nextPermissionError } from "../src/Env.js"
import { GatewayUrl, http, makeGatewayEnv, makeUser } from "../src/GatewayHarness.js"

/**
 * The boot path as an attacker sees it (ADR 0027): the unauthenticated exchange with bad input, what a
 * node's exchanged credentials can reach on the bus, and whether any boot route or list hands out a
 * secret. Every bad exchange must leave its token unspent, with a clear 4xx.
 */

const SECRETS = /sam_boot_[A-Za-z0-9_-]{43}|BEGIN NATS USER|S[UAO][A-Z2-7]{50,}|eyJ[A-Za-z0-9_-]{20,}\.eyJ/

const SEEDS_AND_TOKENS = /sam_boot_[A-Za-z0-9_-]{43}|\bS[UAO][A-Z2-7]{56}\b|eyJ[A-Za-z0-9_-]{20,}\.eyJ/

const unspent = (nodeId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ usedAt: Date | null }>`SELECT used_at FROM node_boot_tokens WHERE node_id = ${nodeId}`.pipe(
      Effect.map((rows) => rows[0]?.usedAt === null)
    )
  )

describe("the boot path under attack", () => {
  layer(makeGatewayEnv(), { excludeTestServices: true, timeout: 60_000 })("node boot", (it) => {
    it.effect("a bad boot log (NUL, too long, unknown status, too many lines) is a 400 and spends nothing", () =>
      Effect.gen(function* () {
        const alice = yield* makeUser("Alice")
        const issued = yield* BootTokens.issueJoin(alice.userId)
        const token = Redacted.value(issued.token)
        const at = new Date().toISOString()
        const line = { at, step: "boot", status: "info", message: "ok" }
        const { publicKey } = Credentials.newUserKey()
        const bad = [
          [{ ...line, message: "before\u0000after" }],
          [{ ...line, step: "bo\u0000ot" }],
          [{ ...line, message: "a line\nthat forges another" }],
          [{ ...line, message: "\u001b[2Jcleared" }],
          [{ ...line, message: "x".repeat(2001) }],
          [{ ...line, status: "pwned" }],
          [{ ...line, at: "yesterday" }],
          Array.from({ length: 201 }, () => line)
        ]
        for (const bootLog of bad) {
          const r = yield* http("POST", "/api/v1/node-boot/exchange", { body: { token, publicKey, bootLog } })
          expect(r.status, JSON.stringify(r.body)).toBe(400)
          expect(r.body.code).toBe("invalid_body")
          expect(yield* unspent(issued.nodeId)).toBe(true)
        }
        // Not JSON, and a body over the limit: refused before anything is read into the ledger.
        const notJson = yield* http("POST", "/api/v1/node-boot/exchange", {
          raw: "{token:",
          headers: { "content-type": "application/json" }
        })
        expect(notJson.status).toBe(400)
        const huge = yield* http("POST", "/api/v1/node-boot/exchange", {
          raw: JSON.stringify({ token, publicKey, bootLog: [{ ...line, message: "y".repeat(3_000_000) }] }),
          headers: { "content-type": "application/json" }
        })
        expect(huge.status).toBe(413)
        expect(yield* unspent(issued.nodeId)).toBe(true)
        // The same token still works once.
        const good = yield* http("POST", "/api/v1/node-boot/exchange", { body: { token, publicKey, bootLog: [line] } })
        expect(good.status).toBe(200)
      })
    )

    it.effect(
      "the live boot log: only an unspent token of that node appends; bad lines are 400; a flood is capped",
      () =>
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          const alice = yield* makeUser("Alice")
          const cloudNode = () =>
            Effect.gen(function* () {
              const nodeId = makeId("node")
              yield* sql`INSERT INTO nodes (id, provider, status, owner_id) VALUES (${nodeId}, 'hetzner', 'provisioning', ${alice.userId})`
              const issued = yield* BootTokens.issue({
                nodeId,
                ownerId: alice.userId,
                purpose: "cloud",
                provider: "hetzner"
              })
              return { nodeId, token: Redacted.value(issued.token) }
            })
          const a = yield* cloudNode()
          const b = yield* cloudNode()
          const entry = (seq: number, message = `line ${seq}`) => ({
            seq,
            at: new Date().toISOString(),
            step: "boot",
            status: "info",
            message
          })
          const append = (body: unknown) => http("POST", "/api/v1/node-boot/log", { body })
          const lines = (nodeId: string) =>
            sql<{
              seq: number
              message: string
            }>`SELECT seq, message FROM node_boot_log WHERE node_id = ${nodeId} ORDER BY id`
          const first = yield* append({ token: a.token, nodeId: a.nodeId, entries: [entry(1), entry(2)] })
          expect(first.status).toBe(200)
          expect(first.body).toEqual({ stored: 2 })
          // The same lines again (a retry): stored once.
          expect((yield* append({ token: a.token, nodeId: a.nodeId, entries: [entry(2), entry(1)] })).body).toEqual({
            stored: 0
          })

          // Bad lines: a clear 400, nothing stored, the token unspent.
          for (const bad of [
            [{ ...entry(3), message: "nul\u0000" }],
            [{ ...entry(3), message: "two\nlines" }],
            [{ ...entry(3), step: "\u001b[31mred" }],
            [{ ...entry(3), message: "x".repeat(2001) }],
            [{ ...entry(3), seq: 0 }],
            [],
            Array.from({ length: 51 }, (_, i) => entry(10 + i))
          ]) {
            const r = yield* append({ token: a.token, nodeId: a.nodeId, entries: bad })
            expect(r.status, JSON.stringify(r.body)).toBe(400)
            expect(r.body.code).toBe("invalid_body")
          }
          expect((yield* lines(a.nodeId)).map((l) => l.seq)).toEqual([1, 2])
          expect(yield* unspent(a.nodeId)).toBe(true)

          // Another node's token, an expired token, a made-up one: the same 401, nothing stored anywhere.
          const refusals = [
            yield* append({ token: b.token, nodeId: a.nodeId, entries: [entry(3)] }),
            yield* append({ token: `sam_boot_${"z".repeat(43)}`, nodeId: a.nodeId, entries: [entry(3)] })
          ]
          yield* sql`UPDATE node_boot_tokens SET expires_at = now() - interval '1 second' WHERE node_id = ${b.nodeId}`
          refusals.push(yield* append({ token: b.token, nodeId: b.nodeId, entries: [entry(1)] }))
          for (const r of refusals) {
            expect(r.status).toBe(401)
            expect(r.body.code).toBe("unauthenticated")
          }
          expect((yield* lines(a.nodeId)).length).toBe(2)
          expect((yield* lines(b.nodeId)).length).toBe(0)
          expect(yield* unspent(b.nodeId)).toBe(true)

          // A flood from the token's holder: 60 posts a minute, then 429 with Retry-After; lines past the
          // node's cap (1000) are not kept.
          const statuses: Array<number> = []
          for (let seq = 3; seq < 70; seq++) {
            const r = yield* append({ token: a.token, nodeId: a.nodeId, entries: [entry(seq)] })
            statuses.push(r.status)
            if (r.status === 429) {
              expect(Number(r.headers.get("retry-after"))).toBeGreaterThan(0)
              break
            }
          }
          expect(statuses).toContain(429)
          expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(60)
          const c = yield* cloudNode()
          yield* sql`
          INSERT INTO node_boot_log (node_id, seq, at, step, status, message)
          SELECT ${c.nodeId}, n, now(), 'boot', 'info', 'filler' FROM generate_series(1, 999) n`
          const last = yield* append({ token: c.token, nodeId: c.nodeId, entries: [entry(1000), entry(1001)] })
          expect(last.body).toEqual({ stored: 1 })
          const full = yield* append({ token: c.token, nodeId: c.nodeId, entries: [entry(1002)] })
          expect(full.status).toBe(429)
          expect(full.body.message).toContain("full (1000 lines)")
          expect((yield* lines(c.nodeId)).length).toBe(1000)

          // Spent by its exchange: no more lines with it.
          const exchanged = yield* http("POST", "/api/v1/node-boot/exchange", {
            body: { token: c.token, nodeId: c.nodeId, publicKey: Credentials.newUserKey().publicKey }
          })
          expect(exchanged.status).toBe(200)
          yield* sql`DELETE FROM node_boot_log WHERE node_id = ${c.nodeId}`
          const after = yield* append({ token: c.token, nodeId: c.nodeId, entries: [entry(1)] })
          expect(after.status).toBe(401)
          expect((yield* lines(c.nodeId)).length).toBe(0)
        })
    )

    it.scoped("a node's exchanged credentials cannot ask for, or overhear, another node's repository tokens", () =>
      Effect.gen(function* () {
        const alice = yield* makeUser("Alice")
        const issued = yield* BootTokens.issueJoin(alice.userId)
        const key = Credentials.newUserKey()
        const got = yield* http("POST", "/api/v1/node-boot/exchange", {
          body: { token: Redacted.value(issued.token), publicKey: key.publicKey }
        })
        expect(got.status).toBe(200)
        const { natsUrl } = yield* LocalNodes
        const nc = yield* Effect.acquireRelease(
          Effect.promise(() =>
            connect({
              servers: natsUrl,
              authenticator: credsAuthenticator(
                new TextEncoder().encode(Redacted.value(Credentials.credsText(got.body.jwt, key.seed)))
              ),
              inboxPrefix: Subjects.nodeInboxPrefix(issued.nodeId)
            })
          ),
          (c) => Effect.promise(() => c.close())
        )
        const other = makeId("node")
        // Ask on another node's subject: the server refuses the publish.
        const denied = nextPermissionError(nc.status())
        nc.publish(Domain.GitAccess.gitAccessSubject(other), JSON.stringify({ workspaceId: makeId("ws") }))
        expect(String((yield* denied).message)).toMatch(/publish/i)
        // Write another node's boot log: refused the same way.
        const deniedLog = nextPermissionError(nc.status())
        nc.publish(Api.bootLogSubject(other), JSON.stringify({ entries: [] }))
        expect(String((yield* deniedLog).message)).toMatch(/publish/i)
        // Overhear every node's asks, or every reply: the server refuses the subscriptions.
        for (const subject of ["sam.agent.*.git", `sam.agent.${other}.>`, "_R_.>", "_INBOX.>"]) {
          const refused = nextPermissionError(nc.status())
          nc.subscribe(subject)
          expect(String((yield* refused).message), subject).toMatch(/subscri/i)
        }
        // Its own subject, for a workspace that is not on it: refused (and audited, as the pull-request test checks).
        const reply = yield* Effect.promise(() =>
          nc.request(Domain.GitAccess.gitAccessSubject(issued.nodeId), JSON.stringify({ workspaceId: makeId("ws") }), {
            timeout: 5000
          })
        )
        expect(reply.json()).toMatchObject({ ok: false, code: "forbidden" })
      })
    )

    it.effect("no boot route, node list or node page hands out a token, a credential or a key", () =>
      Effect.gen(function* () {
        const url = yield* GatewayUrl
        const alice = yield* makeUser("Alice")
        const issued = yield* http("POST", "/api/v1/nodes/join-token", { token: alice.token })
        expect(issued.status).toBe(201)
        const got = yield* http("POST", "/api/v1/node-boot/exchange", {
          body: { token: issued.body.token, publicKey: Credentials.newUserKey().publicKey }
        })
        expect(got.status).toBe(200)
        const nodeId = got.body.nodeId as string
        for (const path of [
          "/api/v1/node-boot/boot.sh",
          "/api/v1/node-boot/vm-agent.sha256",
          "/api/v1/node-boot/node-runtime.sha256",
          "/api/v1/nodes",
          `/api/v1/nodes/${nodeId}`,
          `/api/v1/nodes/${nodeId}/boot-log`
        ]) {
          const r = yield* http("GET", path, { token: alice.token })
          expect([200, 503], path).toContain(r.status)
          expect(JSON.stringify(r.body), path).not.toMatch(SECRETS)
        }
        // The artifact: only the vm-agent, the demo agent, their packages and the launcher (a package's own test
        // fixtures are its business).
        const tarball = yield* Effect.promise(() => fetch(`${url}/api/v1/node-boot/vm-agent.tar.gz`))
        if (tarball.status === 200) {
          const bytes = Buffer.from(yield* Effect.promise(() => tarball.arrayBuffer()))
          const names = execFileSync("tar", ["-tz"], { input: bytes, maxBuffer: 1 << 28 })
            .toString()
            .split("\n")
          expect(
            names.filter(
              (n) =>
                !n.startsWith("./node_modules/") && /\.(creds|pem|key|xkey|nk)$|\.sam\/|master|password|\.env$/i.test(n)
            )
          ).toEqual([])
          // (The code names "BEGIN NATS USER" to parse a creds file: look for values, not that.)
          const text = execFileSync("tar", ["-xzO"], { input: bytes, maxBuffer: 1 << 30 }).toString("latin1")
          expect(text).not.toMatch(SEEDS_AND_TOKENS)
          expect(text).not.toContain(got.body.jwt)
        }
        // Traversal and junk in a node id: refused by the route's schema, never looked up.
        for (const bad of ["..%2F..%2Fetc%2Fpasswd", "node_%00", `node_${"a".repeat(500)}`]) {
          const r = yield* http("GET", `/api/v1/nodes/${bad}/boot-log`, { token: alice.token })
          // (the router does not match a segment over its parameter length: "no such route", 404)
          expect([400, 404], `${bad}: ${JSON.stringify(r.body)}`).toContain(r.status)
          expect(r.body.code).not.toBe("internal")
        }
      })
    )
  })
})
