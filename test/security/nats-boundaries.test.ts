import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import type { NatsConnection } from "@nats-io/nats-core"
import { connect, credsAuthenticator } from "@nats-io/transport-node"
import { Accounts, makeId, Nats, Subjects } from "@sam/bus"
import { Effect } from "effect"
import { expect } from "vitest"
import { LocalNodes } from "../src/ControlPlaneHarness.js"
import { nextPermissionError, waitUntil } from "../src/Env.js"
import { http, makeGatewayEnv, makeUser, type TestUser, tempDir } from "../src/index.js"
import { makeRepo } from "../src/Repo.js"

/**
 * NATS is the isolation boundary (ADR 0016): a node and a programmatic client each hold a user of
 * an account of their own that imports only their own subjects from SAM, so neither a subject nor a
 * reply subject nor a JetStream API call can reach the SAM account's streams, consumers, buckets or
 * another party. Every attack of issue 9 §1 is run here against the real servers, with the very
 * credentials the control plane hands out, and the bus is inspected afterwards with admin rights.
 * Node JWTs live 8 s here, so every node renews its credentials while these tests run.
 */

const NODE_TTL_SECONDS = 8

const Env = makeGatewayEnv({ localRepos: "all" }, { nodeCredsTtlSeconds: NODE_TTL_SECONDS })

/** Streams whose first sequence only a purge or a delete moves here (the KV buckets' move with every update). */
const STREAMS = ["SAM_CMD", "SAM_EVT", "SAM_NODE", "SAM_AGENT"]
const BUCKETS = ["KV_sam_session_state", "KV_sam_leases", "KV_sam_node_health"]

/** What an attack could destroy: each stream's first sequence (a purge moves it), its consumers, a KV canary. */
const busState = Effect.gen(function* () {
  const { jsm, kvm } = yield* Nats
  const streams: Record<string, { firstSeq: number; consumers: Array<string> }> = {}
  for (const name of STREAMS) {
    const info = yield* Effect.promise(() => jsm.streams.info(name).catch(() => undefined))
    const consumers = yield* Effect.promise(async () => {
      const names: Array<string> = []
      if (info !== undefined) for await (const c of jsm.consumers.list(name)) names.push(c.name)
      return names
    })
    streams[name] = { firstSeq: info?.state.first_seq ?? -1, consumers: consumers.sort() }
  }
  for (const name of BUCKETS) {
    const info = yield* Effect.promise(() => jsm.streams.info(name).catch(() => undefined))
    streams[name] = { firstSeq: info === undefined ? -1 : 0, consumers: [] }
  }
  const kv = yield* Effect.promise(() => kvm.open("sam_session_state"))
  const canary = yield* Effect.promise(() => kv.get("canary"))
  return { streams, canary: canary === null ? null : { revision: canary.revision, value: canary.string() } }
})

type BusState = Effect.Effect.Success<typeof busState>

/** A victim: another node's durable consumer with one command waiting in it. */
const victimNode = Effect.gen(function* () {
  const { jsm, js, kvm } = yield* Nats
  const nodeId = makeId("node")
  const durable = Subjects.nodeConsumerName(nodeId)
  yield* Effect.promise(() =>
    jsm.consumers.add("SAM_NODE", {
      durable_name: durable,
      filter_subject: Subjects.nodeCommands(nodeId),
      ack_policy: "explicit" as never
    })
  )
  yield* Effect.promise(() => js.publish(Subjects.nodeCommand(nodeId, "workspace.create"), "{}"))
  const kv = yield* Effect.promise(() => kvm.open("sam_session_state"))
  yield* Effect.promise(() => kv.put("canary", JSON.stringify({ untouched: true })))
  const pending = Effect.promise(() => jsm.consumers.info("SAM_NODE", durable)).pipe(
    Effect.map((i) => ({ pending: i.num_pending, delivered: i.delivered.stream_seq }))
  )
  return { nodeId, durable, pending }
})

/** Nothing of `before` is gone from `after`: each stream still starts where it did, keeps its consumers, the canary is as it was. */
const nothingLost = (before: BusState, after: BusState) => {
  for (const [name, stream] of Object.entries(before.streams)) {
    expect(after.streams[name]?.firstSeq, `${name} first sequence`).toBe(stream.firstSeq)
    expect(after.streams[name]?.consumers, `${name} consumers`).toEqual(expect.arrayContaining(stream.consumers))
  }
  expect(after.canary).toEqual(before.canary)
}

/** Every message this connection sent has reached the server, and the server's JetStream has answered an admin since. */
const settled = (nc: NatsConnection) =>
  Effect.gen(function* () {
    yield* Effect.promise(() => nc.flush())
    const { jsm } = yield* Nats
    yield* Effect.promise(() => jsm.streams.info("SAM_CMD"))
    yield* Effect.promise(() => jsm.streams.info("SAM_CMD"))
  })

const connectCreds = (creds: string, options: { readonly inboxPrefix?: string; readonly name: string }) =>
  Effect.gen(function* () {
    const { natsUrl } = yield* LocalNodes
    return yield* Effect.acquireRelease(
      Effect.promise(() =>
        connect({
          servers: natsUrl,
          authenticator: credsAuthenticator(new TextEncoder().encode(creds)),
          reconnect: false,
          name: options.name,
          ...(options.inboxPrefix === undefined ? {} : { inboxPrefix: options.inboxPrefix })
        })
      ),
      (nc) => Effect.promise(() => nc.close().catch(() => undefined))
    )
  })

/** Whether these credentials can open a connection now, and the server's word when not. */
const tryConnect = (creds: string) =>
  Effect.gen(function* () {
    const { natsUrl } = yield* LocalNodes
    return yield* Effect.promise(() =>
      connect({
        servers: natsUrl,
        authenticator: credsAuthenticator(new TextEncoder().encode(creds)),
        reconnect: false,
        timeout: 3000
      }).then(
        async (nc) => {
          await nc.close()
          return "connected"
        },
        (e: unknown) => String(e)
      )
    )
  })

const mintClient = (user: TestUser) =>
  Effect.gen(function* () {
    const minted = yield* http("POST", "/api/v1/nats/credentials", { token: user.token, body: {} })
    expect(minted.status).toBe(201)
    return minted.body as { creds: string; subjectPrefix: string; inboxPrefix: string }
  })

/** A task in conversation mode on a fresh project; resolves once its node's vm-agent has run it. */
const taskOnANode = (user: TestUser, prompt = "say hello") =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const repo = makeRepo(join(yield* Effect.promise(() => tempDir("sam-repo-")), "repo"))
    const project = yield* http("POST", "/api/v1/projects", {
      token: user.token,
      body: { name: "demo", repoUrl: repo }
    })
    expect(project.status).toBe(201)
    const task = yield* http("POST", `/api/v1/projects/${project.body.id}/tasks`, {
      token: user.token,
      body: { prompt, mode: "conversation" }
    })
    expect(task.status).toBe(201)
    const taskId = task.body.id as string
    const row = yield* waitUntil(
      `task ${taskId} awaiting a follow-up`,
      sql<{ nodeId: string; sessionId: string; executionStep: string }>`
        SELECT node_id, session_id, execution_step FROM tasks WHERE id = ${taskId}`.pipe(
        Effect.map(([r]) => (r?.executionStep === "awaiting_followup" ? r : undefined))
      ),
      { timeout: "60 seconds", every: "100 millis" }
    )
    return { taskId, projectId: project.body.id as string, nodeId: row.nodeId, sessionId: row.sessionId }
  })

const nodeCreds = (nodeId: string) =>
  Effect.gen(function* () {
    const { dir } = yield* LocalNodes
    return yield* Effect.promise(() => readFile(join(dir, nodeId, "node.creds"), "utf8"))
  })

/** The moment this connection is closed by the server, in ms since `since`. */
const closedAfter = (nc: NatsConnection, since: () => number) =>
  Effect.promise(async () => {
    await nc.closed()
    return Date.now() - since()
  })

/** Reply subjects an attacker would like SAM to publish to on its behalf. */
const forgedReplies = (victim: { readonly durable: string }) => [
  "$JS.API.STREAM.PURGE.SAM_CMD",
  "$JS.API.STREAM.PURGE.SAM_EVT",
  "$JS.API.STREAM.DELETE.SAM_AGENT",
  `$JS.API.CONSUMER.DELETE.SAM_NODE.${victim.durable}`,
  `$JS.API.CONSUMER.MSG.NEXT.SAM_NODE.${victim.durable}`,
  `${Accounts.nodeJsApiPrefix}.CONSUMER.MSG.NEXT.SAM_NODE.${victim.durable}`,
  "$KV.sam_session_state.canary",
  "$JS.API.STREAM.PURGE.KV_sam_session_state",
  "$SYS.REQ.CLAIMS.UPDATE"
]

layer(Env, { excludeTestServices: true, timeout: 60_000 })("NATS boundaries (ADR 0016)", (it) => {
  it.scoped(
    "a programmatic client's forged reply subjects reach nothing of SAM's, and SAM's own users cannot aim the ingress either",
    () =>
      Effect.gen(function* () {
        const victim = yield* victimNode
        const before = yield* busState
        const victimBefore = yield* victim.pending
        const alice = yield* makeUser("Alice")
        const minted = yield* mintClient(alice)
        const nc = yield* connectCreds(minted.creds, { inboxPrefix: minted.inboxPrefix, name: "attacker" })
        for (const reply of forgedReplies(victim)) {
          for (const command of ["task.cancel", "task.create", "session.cancel"]) {
            nc.publish(
              `${minted.subjectPrefix}.${command}`,
              JSON.stringify({ taskId: "task_x", projectId: "proj_x", sessionId: "sess_x", prompt: "x" }),
              { reply }
            )
          }
        }
        // An honest request after them comes back: the ingress has answered what came before.
        const honest = yield* Effect.promise(() =>
          nc.request(`${minted.subjectPrefix}.task.cancel`, JSON.stringify({ taskId: makeId("task") }), {
            timeout: 10_000
          })
        )
        expect(honest.json<{ ok: boolean }>().ok).toBe(false)
        yield* settled(nc)
        nothingLost(before, yield* busState)
        expect(yield* victim.pending).toEqual(victimBefore)

        // Inside the SAM account a reply subject is not rewritten; the ingress answers none but the server-made `_R_.` ones.
        const admin = yield* Nats
        const replies = admin.nc.subscribe("sam.test.replies.>")
        const seen: Array<string> = []
        void (async () => {
          for await (const m of replies) seen.push(m.subject)
        })()
        admin.nc.publish(
          Subjects.ingress(alice.userId, alice.tokenId, "task.cancel"),
          JSON.stringify({ taskId: makeId("task") }),
          { reply: "sam.test.replies.forged" }
        )
        const legit = yield* Effect.promise(() =>
          nc.request(`${minted.subjectPrefix}.task.cancel`, JSON.stringify({ taskId: makeId("task") }), {
            timeout: 10_000
          })
        )
        expect(legit.json<{ ok: boolean }>().ok).toBe(false)
        yield* Effect.promise(() => admin.nc.flush())
        expect(seen).toEqual([])
        replies.unsubscribe()
      })
  )

  it.scoped(
    "a node's credentials cannot reach another consumer, a stream or a bucket through its consumer API, its reports or any reply subject",
    () =>
      Effect.gen(function* () {
        const bob = yield* makeUser("Bob")
        const { nodeId } = yield* taskOnANode(bob)
        const victim = yield* victimNode
        const before = yield* busState
        const victimBefore = yield* victim.pending
        const nc = yield* connectCreds(yield* nodeCreds(nodeId), {
          inboxPrefix: Subjects.nodeInboxPrefix(nodeId),
          name: "attacker-node"
        })
        const own = Subjects.nodeConsumerName(nodeId)
        const pull = JSON.stringify({ batch: 5, expires: 1_000_000_000 })
        for (const reply of forgedReplies(victim)) {
          nc.publish(`${Accounts.nodeJsApiPrefix}.CONSUMER.MSG.NEXT.SAM_NODE.${own}`, pull, { reply })
          nc.publish(`${Accounts.nodeJsApiPrefix}.CONSUMER.INFO.SAM_NODE.${own}`, "", { reply })
          nc.publish(Subjects.agentReport(nodeId, "session.event-reported", makeId("sess")), "{}", { reply })
          nc.publish(Subjects.heartbeat(nodeId), "{}", { reply })
          nc.publish(`$JS.ACK.SAM_NODE.${own}.1.1.1.1.1.0`, "+ACK", { reply })
        }
        yield* settled(nc)
        nothingLost(before, yield* busState)
        expect(yield* victim.pending).toEqual(victimBefore)

        // Straight at the JetStream API, the bucket, another node's consumer or the system account: refused by the server.
        for (const subject of [
          "$JS.API.STREAM.PURGE.SAM_CMD",
          `$JS.API.CONSUMER.MSG.NEXT.SAM_NODE.${victim.durable}`,
          `${Accounts.nodeJsApiPrefix}.CONSUMER.MSG.NEXT.SAM_NODE.${victim.durable}`,
          "$KV.sam_session_state.canary",
          "$SYS.REQ.CLAIMS.UPDATE",
          "sam.cmd.task.0.task_x"
        ]) {
          const status = nc.status()
          nc.publish(subject, "{}")
          const error = yield* nextPermissionError(status)
          expect(error.subject).toBe(subject)
        }
        const status = nc.status()
        nc.subscribe("sam.evt.>")
        expect((yield* nextPermissionError(status)).operation).toBe("subscription")
        yield* settled(nc)
        nothingLost(before, yield* busState)
        expect(yield* victim.pending).toEqual(victimBefore)
      })
  )

  it.scoped("a bounded fuzz of subjects and reply subjects from node and client credentials changes nothing", () =>
    Effect.gen(function* () {
      const carol = yield* makeUser("Carol")
      const { nodeId } = yield* taskOnANode(carol)
      const victim = yield* victimNode
      const minted = yield* mintClient(carol)
      const node = yield* connectCreds(yield* nodeCreds(nodeId), {
        inboxPrefix: Subjects.nodeInboxPrefix(nodeId),
        name: "fuzz-node"
      })
      const client = yield* connectCreds(minted.creds, { inboxPrefix: minted.inboxPrefix, name: "fuzz-client" })
      const before = yield* busState
      const victimBefore = yield* victim.pending
      const own = Subjects.nodeConsumerName(nodeId)
      const targets = [
        ...forgedReplies(victim),
        "$JS.API.STREAM.LIST",
        "$JS.API.STREAM.CREATE.EVIL",
        "$JS.API.STREAM.MSG.DELETE.SAM_EVT",
        "$JS.API.STREAM.UPDATE.SAM_CMD",
        "$JS.API.CONSUMER.CREATE.SAM_NODE",
        `$JS.API.CONSUMER.DURABLE.CREATE.SAM_NODE.${own}`,
        "$JS.API.DIRECT.GET.KV_sam_session_state",
        "$KV.sam_leases.x",
        "$SYS.REQ.SERVER.PING.CONNZ",
        "$SYS.REQ.ACCOUNT.PING.CONNZ",
        "sam.cmd.task.0.task_x",
        "sam.evt.proj_x.task.task_x.task.status",
        "sam.node.node_x.cmd.workspace.create",
        "sam.in.user_x.tok_x.task.create",
        `${Accounts.nodeJsApiPrefix}.CONSUMER.MSG.NEXT.SAM_NODE.${own}`,
        Subjects.agentReport(nodeId, "node.ready"),
        `${minted.subjectPrefix}.task.cancel`,
        "_INBOX.x",
        "_R_.x"
      ]
      const payloads = ["{}", '{"batch":10,"expires":1000000000}', '{"filter":">"}', "+ACK", "", "\u0000"]
      let seed = 42
      const next = (n: number) => {
        seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648
        return seed % n
      }
      const status = { node: 0, client: 0 }
      for (let i = 0; i < 400; i++) {
        const nc = i % 2 === 0 ? node : client
        const subject = targets[next(targets.length)] as string
        const reply = targets[next(targets.length)] as string
        try {
          nc.publish(subject, payloads[next(payloads.length)] as string, { reply })
          status[i % 2 === 0 ? "node" : "client"]++
        } catch {}
      }
      yield* settled(node)
      yield* settled(client)
      expect(status.node + status.client).toBe(400)
      nothingLost(before, yield* busState)
      expect(yield* victim.pending).toEqual(victimBefore)
      expect(node.isClosed()).toBe(false)
    })
  )

  it.scoped("revoking an API token closes its NATS connections at once, and its credentials never connect again", () =>
    Effect.gen(function* () {
      const dave = yield* makeUser("Dave")
      const minted = yield* mintClient(dave)
      const nc = yield* connectCreds(minted.creds, { inboxPrefix: minted.inboxPrefix, name: "revoked-client" })
      let revokedAt = 0
      const closed = yield* Effect.fork(closedAfter(nc, () => revokedAt))
      revokedAt = Date.now()
      const revoke = yield* http("DELETE", `/api/v1/tokens/${dave.tokenId}`, { token: dave.token })
      expect(revoke.status).toBe(200)
      const ms = yield* closed.await.pipe(Effect.flatten, Effect.timeout("5 seconds"))
      console.log(`token revoked: its NATS connection closed ${ms} ms after the revoke request was sent`)
      expect(yield* tryConnect(minted.creds)).toMatch(/Authorization|authorization|revoked/i)
      // and the token cannot mint anew
      expect((yield* http("POST", "/api/v1/nats/credentials", { token: dave.token, body: {} })).status).toBe(401)
    })
  )

  it.scoped(
    "deleting a node revokes its NATS account: its connections close and its credentials are refused, renewal too",
    () =>
      Effect.gen(function* () {
        const erin = yield* makeUser("Erin")
        const { nodeId } = yield* taskOnANode(erin)
        const creds = yield* nodeCreds(nodeId)
        const nc = yield* connectCreds(creds, { inboxPrefix: Subjects.nodeInboxPrefix(nodeId), name: "doomed-node" })
        let deletedAt = 0
        const closed = yield* Effect.fork(closedAfter(nc, () => deletedAt))
        deletedAt = Date.now()
        const deleted = yield* http("DELETE", `/api/v1/nodes/${nodeId}`, { token: erin.token })
        expect(deleted.status).toBe(202)
        const ms = yield* closed.await.pipe(Effect.flatten, Effect.timeout("10 seconds"))
        console.log(`node deleted: its NATS connection closed ${ms} ms after the delete request was sent`)
        expect(yield* tryConnect(creds)).toMatch(/Authorization|authorization|revoked/i)
        // the ledger records the revocation once the server has it (the JWT is pushed first, then the row)
        const sql = yield* SqlClient.SqlClient
        const revokedAt = yield* waitUntil(
          "the node's account recorded as revoked",
          sql<{ revokedAt: Date | null }>`
          SELECT revoked_at FROM nats_accounts WHERE kind = 'node' AND owner_ref = ${nodeId}`.pipe(
            Effect.map(([account]) => account?.revokedAt ?? undefined)
          ),
          { timeout: "5 seconds" }
        )
        expect(revokedAt).toBeInstanceOf(Date)
      })
  )

  it.scoped(
    "a node renews its short-lived credentials before they expire and keeps working across renewals",
    () =>
      Effect.gen(function* () {
        const frank = yield* makeUser("Frank")
        const { nodeId, sessionId } = yield* taskOnANode(frank)
        const iatOf = (creds: string) =>
          JSON.parse(Buffer.from((creds.split("\n")[1] ?? "").split(".")[1] ?? "", "base64url").toString())
            .iat as number
        const first = iatOf(yield* nodeCreds(nodeId))
        // Two renewals, so the first JWT has certainly expired and the vm-agent reconnected with a renewed one.
        yield* waitUntil(
          "two renewals of the node's credentials",
          nodeCreds(nodeId).pipe(Effect.map((c) => (iatOf(c) >= first + NODE_TTL_SECONDS ? true : undefined))),
          { timeout: `${NODE_TTL_SECONDS * 4} seconds`, every: "200 millis" }
        )
        const prompt = yield* http("POST", `/api/v1/sessions/${sessionId}/prompt`, {
          token: frank.token,
          body: { prompt: "say still here" }
        })
        expect(prompt.status).toBe(202)
        const sql = yield* SqlClient.SqlClient
        yield* waitUntil(
          "the prompt after the renewals answered",
          sql<{ n: number }>`
          SELECT count(*)::int AS n FROM session_events WHERE session_id = ${sessionId} AND payload::text LIKE '%still here%'`.pipe(
            Effect.map(([r]) => ((r?.n ?? 0) > 0 ? true : undefined))
          ),
          { timeout: "30 seconds" }
        )
      }),
    120_000
  )
})
