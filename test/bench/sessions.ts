/**
 * Benchmark: agent session events from a node (its own minted credentials) through the report
 * ingress and the session actor into Postgres (transcript with seq) and KV (snapshot lastSeq),
 * against raw core NATS publish/subscribe of the same payloads in the same run. The node is this
 * script publishing as the vm-agent would; the agent itself is not in the path.
 * Run: `node --import tsx test/bench/sessions.ts [N] [sessions]`. Rewrites the "Session reports"
 * section of docs/benchmarks.md.
 */
import { cpus } from "node:os"
import { SqlClient } from "@effect/sql"
import { ActorRuntime, Actors, ReportIngress, SessionActor } from "@sam/actors"
import { Accounts, Domain, encode, makeId, Nats, natsLayer, Publish, Subjects } from "@sam/bus"
import type { LocalStack } from "@sam/infra"
import { Migrations } from "@sam/sql"
import { Context, Effect, Layer } from "effect"
import { partyCredentials } from "../src/Parties.js"
import { runOnStack, writeSection } from "./BenchReport.js"

const N = Number(process.argv[2] ?? 2_000)
const SESSIONS = Number(process.argv[3] ?? 8)
// the raw path: core NATS on a subject the node may publish to and no stream stores
const { ControlProtocol, NodeProtocol } = Domain

/** Poll until `done`, for at most two minutes; then fail with what was awaited. */
const waitFor = <E, R>(what: string, done: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function* () {
    const deadline = Date.now() + 120_000
    while (!(yield* done)) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`timed out waiting for ${what}`)
      yield* Effect.sleep(20)
    }
  })

const main = (stack: LocalStack.Stack, natsUrl: string) =>
  Effect.gen(function* () {
    yield* Migrations.migrate()
    const sql = yield* SqlClient.SqlClient
    const userId = makeId("user")
    const projectId = makeId("proj")
    const nodeId = makeId("node")
    const workspaceId = makeId("ws")
    yield* sql`INSERT INTO users (id, display_name) VALUES (${userId}, 'bench')`
    yield* sql`INSERT INTO projects (id, owner_id, name, repo_url) VALUES (${projectId}, ${userId}, 'b', 'file:///b')`
    yield* sql`INSERT INTO nodes (id, provider, status, owner_id) VALUES (${nodeId}, 'local', 'running', ${userId})`
    yield* sql`INSERT INTO workspaces (id, project_id, node_id, status) VALUES (${workspaceId}, ${projectId}, ${nodeId}, 'running')`

    const session = yield* SessionActor.make({ name: `sessb${Math.random().toString(36).slice(2, 6)}`, shards: 8 })
    const runtime = yield* Layer.build(ActorRuntime.layer([session], { instanceId: "bench", leaseTtl: "5 seconds" }))
    const rt = Context.get(runtime, ActorRuntime.ActorRuntime)
    while (rt.shards().length < session.shards) yield* Effect.sleep(50)
    yield* ReportIngress.run({
      routes: ReportIngress.sessionRoutes(session),
      sessionRuns: session,
      durable: `benchingress${Math.random().toString(36).slice(2, 6)}`,
      deliver: "new"
    })

    const { user } = yield* partyCredentials(
      { kind: "node", nodeId },
      { natsUrl, systemCreds: stack.systemCreds, authority: stack.authority }
    )
    const nodeNats = Context.get(
      yield* Layer.build(
        natsLayer({
          servers: natsUrl,
          creds: user.creds,
          name: "bench-node",
          inboxPrefix: Subjects.nodeInboxPrefix(nodeId),
          jsApiPrefix: Accounts.nodeJsApiPrefix
        })
      ),
      Nats
    )
    const ids = Array.from({ length: SESSIONS }, () => makeId("sess"))
    for (const sessionId of ids) {
      yield* Actors.ask(
        session,
        sessionId,
        ControlProtocol.SessionOpen.make({
          sessionId,
          projectId,
          workspaceId,
          nodeId,
          agent: "demo",
          mode: "conversation",
          prompt: "bench"
        })
      )
    }
    const perSession = Math.ceil(N / SESSIONS)
    const total = perSession * SESSIONS
    const event = (sessionId: string, i: number) =>
      NodeProtocol.SessionEvent.make({
        sessionId: sessionId as never,
        nodeSeq: i + 1,
        promptEpoch: 1,
        event: { type: "text", text: `chunk ${i} ${"x".repeat(80)}` }
      })
    const persisted = sql<{ n: string }>`SELECT count(*) AS n FROM session_events WHERE session_id IN ${sql.in(ids)}`

    const started = Date.now()
    yield* Effect.forEach(
      ids,
      (sessionId) =>
        Effect.forEach(
          Array.from({ length: perSession }, (_, i) => i),
          (i) =>
            Publish.publish(Subjects.agentReport(nodeId, "session.event-reported", sessionId), event(sessionId, i)),
          { discard: true }
        ),
      { concurrency: "unbounded", discard: true }
    ).pipe(Effect.provideService(Nats, nodeNats))
    const published = Date.now() - started
    // Bounded: a report the path loses ends the run with what arrived, instead of waiting for ever.
    yield* waitFor("every report in the transcript", persisted.pipe(Effect.map((rows) => Number(rows[0]?.n) >= total)))
    const elapsed = Date.now() - started

    // The raw baseline: the same payloads over core NATS, published and subscribed on one connection (a
    // node's account does not export its subjects to the control plane's: ADR 0016).
    const { nc } = yield* Nats
    const subject = Subjects.pty(nodeId, "bench", "out")
    let received = 0
    const sub = nc.subscribe(subject, { callback: () => void received++ })
    yield* Effect.promise(() => nc.flush())
    const payload = encode(event(ids[0] ?? "", 0))
    const rawStart = Date.now()
    for (let i = 0; i < total; i++) nc.publish(subject, payload)
    yield* waitFor(
      "every raw payload",
      Effect.sync(() => received >= total)
    )
    const rawElapsed = Math.max(1, Date.now() - rawStart)
    sub.unsubscribe()

    const ours = (total / elapsed) * 1000
    const raw = (total / rawElapsed) * 1000
    const section = [
      "## Session reports",
      "",
      `Measured ${new Date().toISOString().slice(0, 16)} UTC by \`node --import tsx test/bench/sessions.ts ${N} ${SESSIONS}\``,
      `on this machine (${cpus().length} cores, shared with other work; figures vary run to run), Node.js ${process.version}, nats-server 2.9, embedded Postgres 17.`,
      `${total} \`session.event\` reports over ${SESSIONS} sessions, published by a node with its own credentials as fast as`,
      "JetStream acknowledges them; the time runs until the last one is in the transcript. Each report: SAM_AGENT →",
      "ingress (subject check) → SAM_CMD → session actor (one transaction: inbox, seq, transcript row, outbox event,",
      "fence) + KV snapshot lastSeq (compare-and-set) → domain event on SAM_EVT.",
      "",
      "| path | events/s | total ms |",
      "|---|---:|---:|",
      `| node → ingress → session actor → Postgres + KV | ${ours.toFixed(0)} | ${elapsed} |`,
      `| raw core NATS publish → subscribe, same payloads | ${raw.toFixed(0)} | ${rawElapsed} |`,
      "",
      `Publishing alone took ${published} ms (each session's reports one after another, each once the one before was`,
      "acknowledged, as single reports: the figure is bounded by this publisher; the vm-agent's runs of events are in",
      `"Live path"). Ratio session path/raw: ${(ours / raw).toFixed(3)}.`,
      ""
    ].join("\n")
    yield* writeSection("Session reports", section)
  }).pipe(Effect.scoped)

await runOnStack((stack) => main(stack, stack.natsUrl))
