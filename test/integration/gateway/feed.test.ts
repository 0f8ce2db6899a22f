import { SqlClient } from "@effect/sql"
import { layer } from "@effect/vitest"
import { ControlPlane } from "@sam/actors"
import { Api, Domain, encode, makeId, Nats, Publish, Subjects } from "@sam/bus"
import { FeedClient } from "@sam/gateway/client"
import { type Duration, Effect } from "effect"
import { expect } from "vitest"
import * as CatchUp from "../../../gateway/src/feed/CatchUp.js"
import { waitUntil } from "../../src/Env.js"
import { GatewayEnv, GatewayUrl, http, makeUser } from "../../src/index.js"
import {
  digest,
  isOpen,
  type RawClient,
  rawClient,
  seedSession,
  startGateway,
  transcriptDigest
} from "./FeedTestKit.js"

const open = (client: Awaited<Effect.Effect.Success<ReturnType<typeof rawClient>>>) => {
  if (!isOpen(client)) throw new Error(`refused with HTTP ${client.refused}: ${client.body}`)
  return client
}
const until = <A>(what: string, check: () => A | undefined, timeout: Duration.DurationInput = "20 seconds") =>
  waitUntil(what, Effect.sync(check), { timeout, every: "20 millis" })
const seqsOf = (client: RawClient) => client.of("session.event").map((f) => f.seq)
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)

/** Frames a careless or hostile client might send: not JSON, unknown types, valid types with bad bodies. */
const badFrames = (count: number) => {
  let seed = 42
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31
    return seed / 2 ** 31
  }
  const pick = <A>(values: ReadonlyArray<A>) => values[Math.floor(random() * values.length)] as A
  const junk = () =>
    Array.from({ length: Math.floor(random() * 40) }, () => String.fromCharCode(32 + random() * 90)).join("")
  const makers: Array<() => string> = [
    () => junk(),
    () => `{${junk()}`,
    () => JSON.stringify(pick([1, "x", null, true, [], [1, 2], {}])),
    () => JSON.stringify({ type: junk() }),
    () => JSON.stringify({ type: pick(["subscribe", "unsubscribe"]), projects: pick(["p", [1], ["proj_x.y"], {}]) }),
    () =>
      JSON.stringify({
        type: "subscribe",
        sessions: [{ sessionId: pick(["sess_a", "x", 3]), afterSeq: pick([-1, 1.5, "1", null]) }]
      }),
    () =>
      JSON.stringify({
        type: "subscribe",
        sessions: Array.from({ length: 101 }, () => ({ sessionId: "sess_a", afterSeq: 0 }))
      }),
    () => JSON.stringify({ type: "unsubscribe", sessions: [{ sessionId: "sess_a" }] }),
    () => `${"[".repeat(5000)}${"]".repeat(5000)}`,
    () => JSON.stringify({ type: "SUBSCRIBE" }),
    () => JSON.stringify({ type: ["ping"] })
  ]
  return Array.from({ length: count }, () => pick(makers)())
}

layer(GatewayEnv, { excludeTestServices: true, timeout: 300_000 })("gateway: live feed", (it) => {
  it.effect("a subscriber gets the snapshot, the transcript, caught-up, then live events, each once", () =>
    Effect.gen(function* () {
      const url = yield* GatewayUrl
      const alice = yield* makeUser("Alice")
      const s = yield* seedSession(alice)
      yield* s.produce(20)
      yield* waitUntil("20 in the transcript", s.lastSeq.pipe(Effect.map((n) => (n >= 20 ? n : undefined))))
      const client = open(yield* rawClient(url, alice.token))
      client.send({ type: "subscribe", id: "r1", sessions: [{ sessionId: s.sessionId, afterSeq: 5 }] })
      yield* until("caught up", () => client.of("caught-up")[0])
      yield* s.produce(10)
      yield* until("30 events", () => (seqsOf(client).at(-1) === 30 ? true : undefined))
      const types = client.frames.map((f) => f.type)
      expect(types.slice(0, 3)).toEqual(["hello", "subscribed", "snapshot"])
      expect(client.of("subscribed")[0]).toMatchObject({ id: "r1", sessions: [s.sessionId], projects: [] })
      expect(client.of("snapshot")[0]?.snapshot).toMatchObject({ activity: expect.any(String) })
      expect(client.of("caught-up")[0]).toMatchObject({ sessionId: s.sessionId, lastSeq: 20 })
      expect(types.indexOf("caught-up")).toBe(types.lastIndexOf("session.event", types.indexOf("caught-up")) + 1)
      expect(seqsOf(client)).toEqual(range(6, 30))
      const seen = digest()
      for (const f of client.of("session.event")) seen.add(f.seq, f.event)
      expect(yield* transcriptDigest(s.sessionId, 5)).toEqual({ count: 25, hex: seen.hex() })
      // Each frame's time is the ledger's, written as Date.toISOString writes it, read back (6–20) or live (21–30).
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql<{ seq: string; at: Date }>`
        SELECT seq, at FROM session_events WHERE session_id = ${s.sessionId} AND seq > 5 ORDER BY seq`
      expect(client.of("session.event").map((f) => [f.seq, f.at])).toEqual(
        rows.map((row) => [Number(row.seq), row.at.toISOString()])
      )
      // On the wire, every frame is one the protocol defines, and the transcript's run (6–20) came as one
      // `session.events` frame, right before `caught-up`.
      for (const frame of client.wire) expect(Api.ServerFrame.safeParse(frame).error).toBeUndefined()
      const wireTypes = client.wire.map((f) => f.type)
      const caughtUp = wireTypes.indexOf("caught-up")
      expect(wireTypes.slice(2, caughtUp + 1)).toEqual(["snapshot", "session.events", "caught-up"])
      const run = client.wire[caughtUp - 1] as Api.ServerFrameOf<"session.events">
      expect([run.sessionId, run.events.map((e) => e.seq)]).toEqual([s.sessionId, range(6, 20)])
      client.socket.close()
    })
  )

  it.effect("a long catch-up comes in frames of about 64 KiB, each of consecutive entries", () =>
    Effect.gen(function* () {
      const url = yield* GatewayUrl
      const alice = yield* makeUser("Alice")
      const s = yield* seedSession(alice)
      // 1,500 events of 200 characters: about 400 KiB of transcript
      yield* s.produce(1_500, 200, 50)
      yield* waitUntil("1,500 in the transcript", s.lastSeq.pipe(Effect.map((n) => (n >= 1_500 ? n : undefined))))
      const client = open(yield* rawClient(url, alice.token))
      client.send({ type: "subscribe", sessions: [{ sessionId: s.sessionId, afterSeq: 0 }] })
      yield* until("caught up", () => client.of("caught-up")[0])
      expect(seqsOf(client)).toEqual(range(1, 1_500))
      const runs = client.wire.filter((f): f is Api.ServerFrameOf<"session.events"> => f.type === "session.events")
      expect(client.wire.filter((f) => f.type === "session.event")).toEqual([])
      // a frame is cut before the entry that would take it past 64 KiB
      const sizes = runs.map((f) => Buffer.byteLength(JSON.stringify(f)))
      expect(runs.length).toBeGreaterThanOrEqual(Math.ceil(sizes.reduce((a, b) => a + b, 0) / (64 * 1024)))
      expect(runs.length).toBeLessThan(12)
      for (const size of sizes) expect(size).toBeLessThan(64 * 1024 + 1024)
      expect(runs.flatMap((f) => f.events.map((e) => e.seq))).toEqual(range(1, 1_500))
      client.socket.close()
    })
  )

  it.effect(
    "a catch-up page ends on its row count or its byte bound, whichever comes first, and says if more follow",
    () =>
      Effect.gen(function* () {
        const alice = yield* makeUser("Alice")
        const s = yield* seedSession(alice)
        yield* s.produce(20)
        yield* waitUntil("20 in the transcript", s.lastSeq.pipe(Effect.map((n) => (n >= 20 ? n : undefined))))
        const catchUp = yield* CatchUp.make
        const sql = yield* SqlClient.SqlClient
        const sizes = (yield* sql<{ size: number }>`
        SELECT octet_length(payload::text) AS size FROM session_events WHERE session_id = ${s.sessionId} ORDER BY seq`).map(
          (row) => Number(row.size)
        )
        const seqs = (page: { readonly entries: ReadonlyArray<{ readonly seq: number }> }) =>
          page.entries.map((f) => f.seq)
        // all of it: no more
        const all = yield* catchUp.page(s.sessionId, 0, 100, 1 << 20)
        expect([seqs(all), all.more]).toEqual([range(1, 20), false])
        // the row count ends it: more may follow
        const counted = yield* catchUp.page(s.sessionId, 5, 10, 1 << 20)
        expect([seqs(counted), counted.more]).toEqual([range(6, 15), true])
        // a page whose row count ends the transcript says so: no empty read after it
        const last = yield* catchUp.page(s.sessionId, 10, 10, 1 << 20)
        expect([seqs(last), last.more]).toEqual([range(11, 20), false])
        // the bytes of three rows: three rows, more follow; a byte short of them: the third still comes, as the one that crosses
        const three = (sizes[0] ?? 0) + (sizes[1] ?? 0) + (sizes[2] ?? 0)
        const bytes = yield* catchUp.page(s.sessionId, 0, 100, three)
        expect([seqs(bytes), bytes.more]).toEqual([range(1, 3), true])
        expect(seqs(yield* catchUp.page(s.sessionId, 0, 100, three - 1))).toEqual(range(1, 3))
        // the first row always comes, however small the bound
        expect(seqs(yield* catchUp.page(s.sessionId, 19, 100, 1))).toEqual([20])
      })
  )

  it.scoped(
    "50 clients that drop off and come back after 1, 100 and 10,000 missed events see every event once, in order",
    () =>
      Effect.gen(function* () {
        const url = yield* GatewayUrl
        const alice = yield* makeUser("Alice")
        const s = yield* seedSession(alice)
        // Two members share the clients: one user may hold at most 32 feed connections (4009).
        const bob = yield* makeUser("Bob")
        const sql = yield* SqlClient.SqlClient
        yield* sql`INSERT INTO project_members (project_id, user_id, role) VALUES (${s.projectId}, ${bob.userId}, 'member')`
        const CLIENTS = 50
        // each client leaves three times, at staggered points, and comes back once this many events were missed
        const plan = (i: number) => [
          { at: 10 + i, miss: 1 },
          { at: 80 + 2 * i, miss: 100 },
          { at: 300 + 2 * i, miss: 10_000 }
        ]
        const TOTAL = 300 + 2 * CLIENTS + 10_000 + 100
        let produced = 0
        yield* Effect.forkScoped(
          Effect.forever(
            s.lastSeq.pipe(
              Effect.tap((n) => Effect.sync(() => (produced = n))),
              Effect.zipRight(Effect.sleep(50))
            )
          )
        )
        // The turn is not in flight: no healer ends it mid-test.
        yield* s.activity("idle")
        const started = Date.now()
        // One event a report while clients leave and come back after 1 and 100 missed events, then runs of 10 a
        // report, as a busy agent's vm-agent sends them (one a report throughout took 100 s here).
        const ONE_BY_ONE = 300 + 2 * CLIENTS
        yield* Effect.forkScoped(s.produce(ONE_BY_ONE).pipe(Effect.zipRight(s.produce(TOTAL - ONE_BY_ONE, 60, 10))))
        const clients = Array.from({ length: CLIENTS }, (_, i) => {
          const steps = plan(i)
          const seen = digest()
          const state = {
            seqs: [] as Array<number>,
            step: 0,
            away: undefined as number | undefined,
            // whether the connection since the last comeback is open: frames still on their way over the one it left
            // must not make it leave again before it is back (two leaves on one connection: a reconnect fewer)
            back: true,
            client: undefined as unknown as FeedClient
          }
          state.client = new FeedClient({
            baseUrl: url,
            token: i % 2 === 0 ? alice.token : bob.token,
            sessions: [{ sessionId: s.sessionId }],
            minBackoffMs: 50,
            onStatus: (status) => {
              if (status.state === "open") state.back = true
            },
            onFrame: (f) => {
              if (f.type !== "session.event") return
              state.seqs.push(f.seq)
              seen.add(f.seq, f.event)
              const next = steps[state.step]
              if (next !== undefined && state.away === undefined && state.back && f.seq >= next.at) {
                state.away = next.miss
                state.client.disconnect()
              }
            }
          })
          return { state, seen }
        })
        // bring each client back once it has missed its share
        let logged = Date.now()
        yield* until(
          "every client back for the last time and done",
          () => {
            if (Date.now() - logged > 10_000) {
              logged = Date.now()
              const steps = clients.map((c) => c.state.step).join("")
              const got = Math.min(...clients.map((c) => c.state.seqs.length))
              console.log(`${logged - started} ms: ${produced} produced; steps ${steps}; every client has ${got}`)
            }
            for (const { state } of clients) {
              const last = state.client.lastSeq(s.sessionId) ?? 0
              // A client may have read past its leave point (frames already on their way when it left);
              // it still comes back at the end rather than wait for events that will never be produced.
              if (state.away !== undefined && produced >= Math.min(TOTAL, last + state.away)) {
                state.away = undefined
                state.step++
                state.back = false
                state.client.connect()
              }
            }
            return clients.every(({ state }) => state.step === 3 && state.seqs.length === TOTAL) ? true : undefined
          },
          "170 seconds"
        )
        const transcript = yield* transcriptDigest(s.sessionId)
        expect(transcript.count).toBe(TOTAL)
        for (const { state, seen } of clients) {
          expect(state.client.stats).toEqual({ connections: 4, duplicates: 0, gaps: 0 })
          expect(state.seqs.every((seq, i) => seq === i + 1)).toBe(true)
          expect(seen.hex()).toBe(transcript.hex)
          state.client.close()
        }
        console.log(`feed: ${TOTAL} events to ${CLIENTS} clients with 3 reconnects each in ${Date.now() - started} ms`)
      }),
    240_000
  )

  it.effect("a non-member is refused the project and the session, and sees none of their events", () =>
    Effect.gen(function* () {
      const url = yield* GatewayUrl
      const alice = yield* makeUser("Alice")
      const bob = yield* makeUser("Bob")
      const s = yield* seedSession(alice)
      const mallory = open(yield* rawClient(url, bob.token))
      mallory.send({
        type: "subscribe",
        id: "x",
        projects: [s.projectId],
        sessions: [{ sessionId: s.sessionId, afterSeq: 0 }]
      })
      const member = open(yield* rawClient(url, alice.token))
      member.send({ type: "subscribe", projects: [s.projectId], sessions: [{ sessionId: s.sessionId, afterSeq: 0 }] })
      yield* until("bob's answer", () => mallory.of("subscribed")[0])
      yield* s.produce(5)
      yield* s.activity("prompting")
      yield* until("alice has 5 events", () => (seqsOf(member).length === 5 ? true : undefined))
      const activity = yield* until("alice sees the activity", () =>
        member.of("event").find((e) => e.eventType === "session.activity")
      )
      expect(activity).toMatchObject({ projectId: s.projectId, kind: "session", id: s.sessionId })
      const errors = mallory.of("error")
      expect(errors.map((e) => [e.code, e.id, e.details])).toEqual([
        ["forbidden", "x", { projectId: s.projectId }],
        ["forbidden", "x", { sessionId: s.sessionId }]
      ])
      expect(mallory.of("subscribed")[0]).toMatchObject({ projects: [], sessions: [] })
      expect(mallory.frames.map((f) => f.type).sort()).toEqual(["error", "error", "hello", "subscribed"])
      mallory.send({ type: "subscribe", id: "y", sessions: [{ sessionId: "sess_doesnotexist", afterSeq: 0 }] })
      yield* until("not found", () => mallory.of("error").find((e) => e.id === "y"))
      expect(mallory.of("error").find((e) => e.id === "y")?.code).toBe("not_found")
      mallory.socket.close()
      member.socket.close()
    })
  )

  /** Alice's session, and Bob, a member of its project, watching it (and its project, with `project`) with 3 events. */
  const bobWatching = (project: boolean) =>
    Effect.gen(function* () {
      const url = yield* GatewayUrl
      const alice = yield* makeUser("Alice")
      const bob = yield* makeUser("Bob")
      const s = yield* seedSession(alice)
      const added = yield* http("POST", `/api/v1/projects/${s.projectId}/members`, {
        token: alice.token,
        body: { userId: bob.userId, role: "member" }
      })
      expect(added.status).toBeLessThan(300)
      const watcher = open(yield* rawClient(url, bob.token))
      watcher.send({
        type: "subscribe",
        ...(project ? { projects: [s.projectId] } : {}),
        sessions: [{ sessionId: s.sessionId, afterSeq: 0 }]
      })
      yield* until("bob is caught up", () => watcher.of("caught-up")[0])
      yield* s.produce(3)
      yield* until("bob has 3 events", () => (seqsOf(watcher).length === 3 ? true : undefined))
      const removedAt = Date.now()
      const removed = yield* http("DELETE", `/api/v1/projects/${s.projectId}/members/${bob.userId}`, {
        token: alice.token
      })
      expect(removed.status).toBe(200)
      /** Alice, still a member, gets the next 3 events live; Bob, removed, none of them. */
      const onlyAliceGetsMore = Effect.gen(function* () {
        const owner = open(yield* rawClient(url, alice.token))
        owner.send({ type: "subscribe", sessions: [{ sessionId: s.sessionId, afterSeq: 3 }] })
        yield* until("alice is caught up", () => owner.of("caught-up")[0])
        yield* s.produce(3)
        yield* until("alice gets the next 3 live", () => (seqsOf(owner).length === 3 ? true : undefined))
        expect(seqsOf(watcher)).toEqual([1, 2, 3])
        watcher.socket.close()
        owner.socket.close()
      })
      return { s, watcher, removedAt, onlyAliceGetsMore }
    })

  it.effect("a member removed from the project stops receiving its events at once, not at the next recheck", () =>
    Effect.gen(function* () {
      const { watcher, removedAt, onlyAliceGetsMore } = yield* bobWatching(true)
      // The default recheck is a minute away: the removal event itself must end the subscriptions.
      const refusals = yield* until(
        "bob is told he lost access",
        () => (watcher.of("error").length >= 2 ? watcher.of("error") : undefined),
        "10 seconds"
      )
      expect(Date.now() - removedAt).toBeLessThan(10_000)
      expect(refusals.map((e) => e.code)).toEqual(["forbidden", "forbidden"])
      yield* onlyAliceGetsMore
    })
  )

  it.effect("a removed member subscribed to a session alone (not its project) is cut off at once too", () =>
    Effect.gen(function* () {
      const { s, watcher, onlyAliceGetsMore } = yield* bobWatching(false)
      // No connection watches the project, yet its removal event must end bob's session subscription now.
      const refusal = yield* until("bob is told he lost access", () => watcher.of("error")[0], "10 seconds")
      expect(refusal).toMatchObject({ code: "forbidden", details: { sessionId: s.sessionId } })
      yield* until("bob's subscriptions are empty", () =>
        watcher.of("subscribed").find((f) => f.id === undefined && f.sessions.length === 0)
      )
      yield* onlyAliceGetsMore
    })
  )

  it.effect("notifications reach only their user, node events only users who can see the node, audits nobody", () =>
    Effect.gen(function* () {
      const url = yield* GatewayUrl
      const alice = yield* makeUser("Alice")
      const bob = yield* makeUser("Bob")
      const s = yield* seedSession(alice)
      const a = open(yield* rawClient(url, alice.token))
      const b = open(yield* rawClient(url, bob.token))
      yield* until("both connected", () => (a.of("hello")[0] && b.of("hello")[0]) ?? undefined)
      const notify = (userId: string) => {
        const id = makeId("ntf")
        const envelope = Domain.Notifications.NotificationCreated.make({
          notification: {
            id,
            userId: userId as never,
            projectId: s.projectId,
            taskId: null,
            sessionId: s.sessionId,
            type: "needs_input",
            priority: true,
            title: "the agent asks",
            body: null,
            createdAt: new Date().toISOString(),
            readAt: null
          }
        })
        return { id, envelope, subject: Domain.Notifications.notificationSubject(s.projectId, id) }
      }
      const forAlice = notify(alice.userId)
      yield* Publish.publish(forAlice.subject, forAlice.envelope)
      // the outbox relay may publish twice: JetStream keeps one, a core subscriber sees both
      const { nc } = yield* Nats
      nc.publish(forAlice.subject, encode(forAlice.envelope))
      const node = ControlPlane.NodeStatusEvent.make({ nodeId: s.nodeId, status: "running", ready: true })
      const audit = { ...node, id: makeId("msg"), type: "report.dropped" }
      yield* Publish.publish(Subjects.event("system", "node", s.nodeId, audit.type), audit)
      yield* Publish.publish(Subjects.event("system", "node", s.nodeId, node.type), node)
      // events reach the feed in order: once Bob has his, everything before it was routed
      const forBob = notify(bob.userId)
      yield* Publish.publish(forBob.subject, forBob.envelope)
      yield* until("bob has his notification", () => b.of("event")[0])
      yield* until("alice has the node event", () => a.of("event").find((e) => e.eventType === "node.status"))
      expect(a.of("event").map((e) => [e.eventType, e.projectId, e.id])).toEqual([
        ["notification.created", s.projectId, forAlice.id],
        ["node.status", null, s.nodeId]
      ])
      expect(a.of("event")[0]?.body).toMatchObject({ notification: { title: "the agent asks" } })
      expect(b.of("event").map((e) => [e.eventType, e.id])).toEqual([["notification.created", forBob.id]])
      a.socket.close()
      b.socket.close()
    })
  )

  it.effect("no token, a bad token or a revoked one is refused before the upgrade; the query token works", () =>
    Effect.gen(function* () {
      const url = yield* GatewayUrl
      const alice = yield* makeUser("Alice")
      const none = yield* rawClient(url, undefined)
      expect(isOpen(none) ? 101 : none.refused).toBe(401)
      const created = yield* http("POST", "/api/v1/tokens", { token: alice.token, body: { name: "feed" } })
      const token = created.body.token as string
      const viaQuery = open(yield* rawClient(url, token, { query: true }))
      yield* until("hello", () => viaQuery.of("hello")[0])
      expect(viaQuery.of("hello")[0]?.userId).toBe(alice.userId)
      viaQuery.socket.close()
      expect((yield* http("DELETE", `/api/v1/tokens/${created.body.id}`, { token: alice.token })).status).toBe(200)
      for (const query of [false, true]) {
        const refused = yield* rawClient(url, token, { query })
        expect(isOpen(refused) ? 101 : refused.refused).toBe(401)
        if (!isOpen(refused)) expect(JSON.parse(refused.body).code).toBe("unauthenticated")
      }
      const garbage = yield* rawClient(url, "sam_pat_nope")
      expect(isOpen(garbage) ? 101 : garbage.refused).toBe(401)
      const plain = yield* http("GET", "/api/v1/feed", { token: alice.token })
      expect(plain.status).toBe(426)
    })
  )

  it.scoped("an open connection is closed when its token is revoked; silent ones are closed, pings answered", () =>
    Effect.gen(function* () {
      const url = yield* startGateway({ HEARTBEAT_MS: 300, RECHECK_MS: 300 })
      const alice = yield* makeUser("Alice")
      const created = yield* http("POST", "/api/v1/tokens", { token: alice.token, body: { name: "feed" } })
      const revoked = open(yield* rawClient(url, created.body.token))
      const silent = open(yield* rawClient(url, alice.token))
      const polite = open(yield* rawClient(url, alice.token))
      polite.socket.on("message", (data) => {
        if (JSON.parse(String(data)).type === "ping") polite.send({ type: "pong" })
      })
      polite.send({ type: "ping" })
      yield* http("DELETE", `/api/v1/tokens/${created.body.id}`, { token: alice.token })
      const [gone, quiet] = yield* Effect.promise(() => Promise.all([revoked.closed, silent.closed]))
      expect(gone.code).toBe(4001)
      expect(quiet).toEqual({ code: 4000, reason: "no pong" })
      expect(silent.of("ping").length).toBeGreaterThanOrEqual(1)
      expect(polite.socket.readyState).toBe(1)
      expect(polite.of("pong").length).toBe(1)
      polite.socket.close()
    })
  )

  it.effect("bad frames get error frames or close codes, change nothing, and the gateway keeps serving", () =>
    Effect.gen(function* () {
      const url = yield* GatewayUrl
      const alice = yield* makeUser("Alice")
      const s = yield* seedSession(alice)
      const good = open(yield* rawClient(url, alice.token))
      good.send({ type: "subscribe", sessions: [{ sessionId: s.sessionId, afterSeq: 0 }] })
      const frames = badFrames(300)
      for (let i = 0; i < frames.length; i += 20) {
        const batch = frames.slice(i, i + 20)
        const client = open(yield* rawClient(url, alice.token))
        for (const frame of batch) client.send(frame)
        client.send({ type: "subscribe", id: "ok", sessions: [{ sessionId: s.sessionId, afterSeq: 0 }] })
        yield* until("answers", () => client.of("subscribed")[0])
        const errors = client.of("error")
        expect(errors.length).toBe(batch.length)
        expect(errors.every((e) => e.code === "bad_frame")).toBe(true)
        expect(client.of("subscribed")[0]).toMatchObject({ id: "ok", sessions: [s.sessionId] })
        if (batch.length === 20) {
          client.send("one too many")
          expect(yield* Effect.promise(() => client.closed)).toMatchObject({ code: 1008 })
        } else client.socket.close()
      }
      const binary = open(yield* rawClient(url, alice.token))
      binary.socket.send(Buffer.from([1, 2, 3]))
      expect((yield* Effect.promise(() => binary.closed)).code).toBe(1003)
      const huge = open(yield* rawClient(url, alice.token))
      huge.send(JSON.stringify({ type: "ping", pad: "x".repeat(70_000) }))
      expect((yield* Effect.promise(() => huge.closed)).code).toBe(1009)
      const details = open(yield* rawClient(url, alice.token))
      details.send({ type: "subscribe", sessions: [{ sessionId: "nope", afterSeq: -1 }] })
      const refusal = yield* until("error", () => details.of("error")[0])
      const paths = (refusal.details as Array<{ path: string }>).map((issue) => issue.path)
      expect(paths).toEqual(expect.arrayContaining(["sessions.0.sessionId", "sessions.0.afterSeq"]))
      details.socket.close()
      yield* s.produce(5)
      yield* until("the good client still gets events", () => (seqsOf(good).length === 5 ? true : undefined))
      expect((yield* http("GET", "/api/v1/me", { token: alice.token })).status).toBe(200)
      good.socket.close()
    })
  )

  it.scoped(
    "a client that stops reading is closed with the reason, while a fast one keeps receiving",
    () =>
      Effect.gen(function* () {
        const url = yield* startGateway({ MAX_BUFFERED_BYTES: 512 * 1024, CLOSE_GRACE_MS: 60_000 })
        const alice = yield* makeUser("Alice")
        const s = yield* seedSession(alice)
        const fast = open(yield* rawClient(url, alice.token))
        const slow = open(yield* rawClient(url, alice.token))
        for (const client of [fast, slow])
          client.send({ type: "subscribe", sessions: [{ sessionId: s.sessionId, afterSeq: 0 }] })
        yield* until("both caught up", () => (fast.of("caught-up")[0] && slow.of("caught-up")[0]) ?? undefined)
        slow.socket.pause()
        // The turn is not in flight: no healer ends it (an event more) while the late client catches up.
        yield* s.activity("idle")
        const N = 400
        // Reports of 8 events, as a busy agent's vm-agent sends them: the session publishes them in
        // batches of four 60 KB events, and a busy gateway may take several batches in one step.
        yield* Effect.forkScoped(s.produce(N, 60_000, 8))
        yield* until(
          "the fast client has every event",
          () => {
            const closed = fast.closedWith()
            if (closed !== undefined) throw new Error(`the fast client was closed: ${closed.code} ${closed.reason}`)
            return seqsOf(fast).length === N ? true : undefined
          },
          "120 seconds"
        )
        slow.socket.resume()
        const closed = yield* Effect.promise(() => slow.closed)
        expect(closed.code).toBe(4008)
        expect(closed.reason).toMatch(/^too slow: \d+ bytes buffered( for \d+ ms)?$/)
        expect(seqsOf(slow).length).toBeLessThan(N)
        expect(seqsOf(fast)).toEqual(range(1, N))
        expect(fast.socket.readyState).toBe(1)
        fast.socket.close()
        // Catching up is paced, not punished: 24 MB to a client that does not read for a while.
        const late = open(yield* rawClient(url, alice.token))
        late.send({ type: "subscribe", sessions: [{ sessionId: s.sessionId, afterSeq: 0 }] })
        late.socket.pause()
        yield* Effect.sleep("3 seconds")
        late.socket.resume()
        yield* until("the late client caught up", () => late.of("caught-up")[0], "60 seconds")
        expect(seqsOf(late)).toEqual(range(1, N))
        late.socket.close()
      }),
    180_000
  )

  it.effect("FeedClient follows a session across reconnects", () =>
    Effect.gen(function* () {
      const url = yield* GatewayUrl
      const alice = yield* makeUser("Alice")
      const s = yield* seedSession(alice)
      const seqs: Array<number> = []
      const client = new FeedClient({
        baseUrl: url,
        token: alice.token,
        sessions: [{ sessionId: s.sessionId }],
        onFrame: (f) => {
          if (f.type === "session.event") seqs.push(f.seq)
        }
      })
      yield* s.produce(10)
      yield* until("10", () => (seqs.length === 10 ? true : undefined))
      client.disconnect()
      yield* s.produce(10)
      yield* waitUntil("20 in the transcript", s.lastSeq.pipe(Effect.map((n) => (n >= 20 ? n : undefined))))
      client.connect()
      yield* until("20", () => (seqs.length === 20 ? true : undefined))
      expect(seqs).toEqual(range(1, 20))
      expect(client.stats).toMatchObject({ connections: 2, duplicates: 0, gaps: 0 })
      client.close()
    })
  )
})
